"""Webhooks: a business customer's systems are told when its tasks end, its orders are paid and
its quota runs low, instead of polling.

- **From the outbox, after commit.** A task's terminal state and an order's change already write a
  durable push in their own transaction (``core/outbox.py``); the same flush writes a
  ``webhook.fan_out`` message beside it. A relay publishes it once committed: ``events.py`` reads
  what happened and ``deliveries.py`` records one delivery per subscribed endpoint (unique per
  endpoint and event, so a message published twice adds nothing).
- **Delivery** (``sender.py``, in every process that runs tasks): a due delivery is claimed by a
  conditional update (one sender per attempt, whatever the number of processes), POSTed through the
  SSRF-safe fetcher (public addresses only, pinned, no redirects), signed per the Standard
  Webhooks specification with the ``standardwebhooks`` library. The event id is the
  ``webhook-id`` of every attempt and replay: receivers deduplicate on it.
- **Retries** with growing waits for ``WARDROBE_WEBHOOK_RETRY_HOURS`` (24 h); an endpoint whose
  every attempt failed for that long is disabled, with the reason, in the audit log and in its
  owner's list, until the owner enables it again. Every attempt is in the delivery log; a
  delivery can be sent again (replay) with the same id.
- **Secrets** are never stored: each endpoint's is an HMAC of the deployment's
  ``WARDROBE_WEBHOOK_SECRET_KEY`` and the endpoint's random salt (``secrets.py``).
"""
