"""Business statistics for staff: ``GET /api/v1/admin/stats/overview`` (stats:read).

Figures are per UTC day. A task counts on the day it was created (its status and duration as they
are now); an order on the day it was paid (``paid_at``, the platform's time); a refund on the day it
succeeded (``settled_at``); a ledger row on the day it was written; a user on the day the account
was made. The definitions:

- **new users**: accounts created that day (staff and erased accounts included);
- **active users**: distinct users who created at least one task that day. Logins and token
  refreshes are not counted: refresh tokens are purged 30 days after expiry and a session keeps
  only its last refresh, so they could not give an exact distinct count over a past range. The
  range total (``totals.active_users``) is the distinct count over the whole range, not a sum;
- **tasks**, by feature and status; **tasks_failed** those failed; **failure_rate** failed among
  finished (succeeded + failed) tasks, canceled and unfinished ones left out;
- **performance**, per (feature, provider): finished tasks with at least one step run on that
  provider (a task whose steps used two providers counts under both; one that ended before any
  step ran on a provider under ``provider: null``), how many failed, and the p95 of the tasks'
  durations (``started_at`` to ``finished_at``, to the ms);
- **quota granted**: positive ledger amounts of kinds grant, purchase, admin_adjustment,
  referral_reward and referral_rebate; **quota spent**: confirmed holds (kind ``confirm``; expired
  quota, refund claw-backs and negative adjustments are neither);
- **revenue**: ``paid_fen`` of orders paid that day, by channel, with their count; **refunds**:
  ``amount_fen`` of refunds that succeeded that day, by the channel of their order.

How it stays fast: the rollup job (``jobs.roll_up_stats``, every 15 minutes in ``wardrobe
scheduler``) stores each closed day in five small tables (``models/stats.py``): ``stats_daily``
(new/active users, quota, whether the day is final), ``stats_daily_tasks`` (feature, status),
``stats_daily_performance`` (feature, provider, counts, a duration histogram),
``stats_daily_revenue`` (channel) and ``stats_daily_active_users`` (the day's distinct (day, user)
pairs). It computes them with the same range queries the overview runs live (each a range on an
indexed time column: ``tasks(created_at, user_id)``, ``users(created_at)``,
``quota_ledger(kind, created_at)``, ``orders(paid_at)``, ``refunds(settled_at)``, steps by
``task_id``) and replaces a day's rows in one transaction, so running it again changes nothing. A
closed day becomes *final* when it was rolled up an hour after it ended with none of its tasks
still queued or running (or 7 days after it ended in any case); until then the job recomputes it on
every run. The overview reads final days from the rollups and computes every other day up to today
live, so its answer is always current; deleting a day's ``stats_daily`` row makes the next run
compute it again.

The p95 comes from histograms of fixed buckets: upper bounds floor(50 ms × 2^(k/3)), k = 0..48
(50 ms to ~55 min, three per doubling), plus one for longer, kept as 50 counters per row so that
a range's histogram is a sum per column. The answer is the upper bound of the bucket that holds
the ceil(0.95 n)-th shortest duration, capped by the longest duration seen: never below the exact
nearest-rank p95, and less than 26 % (2^(1/3)) above it.

The range's distinct active users are counted exactly by the database: the final days' (day,
user) pairs, plus the live days' users who are in none of them (looked up by ``(user_id, day)``).
The first count is the costly one (a pass over the pairs) and cannot change while those days stay
as computed, so it is cached per process under the days and their latest computation time.
"""
