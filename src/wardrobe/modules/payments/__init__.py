"""Payments: orders, fulfilment, platform notifications, refunds and reconciliation.

Rules that hold everywhere here:

- **No network call inside a database transaction.** An order is committed before the platform
  is asked to open the trade; a refund (and the hold on the quota it takes back) is committed
  before the platform is asked to refund.
- **Money moves once.** An order is fulfilled by the one transaction that moves it out of
  ``pending``/``closed`` under a row lock, with its ledger entries (``order:{no}``) in the same
  transaction; a refund settles by the one conditional update that moves it out of
  ``processing``. Notifications, reconciliation and retries may all arrive at once: the losers
  find the work done and change nothing.
- **Claw-backs never go below zero.** A refund first *holds* the quota it will take back (the
  normal reserve, so the user cannot spend it meanwhile) and is refused with
  ``REFUND_EXCEEDS_UNSPENT`` when the user has already spent it: we limit the refund rather than
  record a debt (an operator can still refund less, or adjust quota with a reason). The hold is
  confirmed when the platform confirms the refund, and released if the refund fails.

Where each part lives: ``orders`` (opening an order, reading it, announcing its changes),
``fulfilment`` (a confirmed payment credits the order), ``notifications`` (the platforms' callbacks
through the inbox), ``refunds`` (asking, settling, claw-back), ``reconciliation`` (the periodic
repair of what notifications missed); ``repository`` holds the queries they share, ``gateway`` the
platform protocol and the configured set of platforms (``Payments``).
"""
