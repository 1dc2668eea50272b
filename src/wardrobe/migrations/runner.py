"""Apply Alembic migrations programmatically, on any of the three backends."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent


def alembic_config() -> Config:
    # Alembic is imported when migrations run, not with the app: it is ~11 MiB of every API
    # process's memory, and production migrates with `wardrobe migrate` before it starts them.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(slug)s")
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    from alembic import command

    command.upgrade(cfg, revision)


def _downgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    from alembic import command

    command.downgrade(cfg, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_downgrade, revision)


def _revision(connection: Connection, message: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    from alembic import command

    command.revision(cfg, message=message, autogenerate=True)


async def autogenerate(engine: AsyncEngine, message: str) -> None:
    """Developer helper: write a new revision from the difference between models and database."""
    async with engine.begin() as conn:
        await conn.run_sync(_revision, message)
