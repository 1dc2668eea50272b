"""When each periodic job of ``wardrobe scheduler`` last started and last succeeded.

Kept in the database, not in the scheduler's memory, so that a restarted (or newly elected)
scheduler knows what is due: a job whose period passed while no scheduler ran is run at once, a job
that ran recently is not run again. A run is claimed by a conditional UPDATE of ``last_started_at``
(``worker/scheduler_runs.py``), so two schedulers never both start a job within its period.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from wardrobe.models.base import Base, UTCDateTime


class SchedulerRun(Base):
    __tablename__ = "scheduler_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The failure of the last run (exception class and message, cut short); NULL after a success.
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    runs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
