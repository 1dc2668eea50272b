"""``wardrobe backup create | verify | restore``."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from wardrobe.modules.backup.service import Checked

T = TypeVar("T")

# Errors end in one line, never a traceback: a traceback with its locals could show connection
# details.
backup_app = typer.Typer(
    help="Database backups: create, verify, restore", no_args_is_help=True, pretty_exceptions_show_locals=False
)


def _run(work: Coroutine[Any, Any, T]) -> T:
    from botocore.exceptions import BotoCoreError, ClientError
    from sqlalchemy.exc import SQLAlchemyError

    from wardrobe.modules.backup.archive import ArchiveError
    from wardrobe.modules.backup.cipher import BackupDecryptionError
    from wardrobe.modules.backup.mariadb import ToolError
    from wardrobe.modules.backup.service import BackupError

    try:
        return asyncio.run(work)
    except (BackupError, ArchiveError, BackupDecryptionError, ToolError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except SQLAlchemyError as exc:
        typer.echo(f"error: database: {getattr(exc, 'orig', None) or type(exc).__name__}", err=True)
        raise typer.Exit(1) from exc
    except (BotoCoreError, ClientError) as exc:
        typer.echo(f"error: object storage: {exc}", err=True)
        raise typer.Exit(1) from exc


def _report(checked: Checked, done: str) -> None:
    manifest = checked.manifest
    if manifest is not None:
        typer.echo(
            f"archive: {manifest.database}, created {manifest.created_at}, revision {manifest.alembic_revision}, "
            f"{sum(manifest.row_counts.values())} rows in {len(manifest.row_counts)} tables, "
            f"{manifest.ledger.accounts} quota accounts, encrypted: {'yes' if manifest.encrypted else 'no'}"
        )
    if checked.failures:
        for failure in checked.failures:
            typer.echo(f"FAIL {failure}", err=True)
        typer.echo(f"{len(checked.failures)} failures", err=True)
        raise typer.Exit(1)
    typer.echo(done)


@backup_app.command("create")
def create_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Archive file or directory (default WARDROBE_BACKUP_DIR)")
    ] = None,
    encrypt: Annotated[bool, typer.Option("--encrypt", help="Seal under WARDROBE_BACKUP_ENCRYPTION_KEY")] = False,
    upload: Annotated[bool, typer.Option("--upload", help="Also put it in WARDROBE_BACKUP_BUCKET")] = False,
) -> None:
    """Back up the database: MariaDB/MySQL with a consistent mariadb-dump, SQLite with its online
    backup, while the service runs. Prints the archive's path (and URL when uploaded)."""
    from wardrobe.modules.backup.service import create_backup
    from wardrobe.settings import get_settings

    created = _run(create_backup(get_settings(), output=output, encrypt=encrypt, upload=upload))
    manifest = created.manifest
    typer.echo(
        f"{created.path} ({manifest.payload_bytes} bytes, revision {manifest.alembic_revision}, "
        f"{sum(manifest.row_counts.values())} rows, sha256 {manifest.payload_sha256})"
    )
    if manifest.ledger.violations:
        typer.echo(f"warning: {manifest.ledger.violations} quota accounts differ from their ledger", err=True)
    if created.uploaded_to:
        typer.echo(f"uploaded to {created.uploaded_to}")


@backup_app.command("verify")
def verify_command(
    source: Annotated[str, typer.Argument(help="Archive path or s3://bucket/key")],
    server_url: Annotated[
        str | None,
        typer.Option(help="MariaDB server for the scratch database (default WARDROBE_DATABASE_URL's server)"),
    ] = None,
) -> None:
    """Check an archive: its checksum, then restored into a scratch database (dropped afterwards)
    its row counts, Alembic revision and quota ledger invariants. Exit 1 on any failure."""
    from wardrobe.modules.backup.service import verify_backup
    from wardrobe.settings import get_settings

    checked = _run(verify_backup(get_settings(), source, server_url=server_url))
    _report(checked, "verified: checksum, row counts, revision and ledger invariants hold")


@backup_app.command("restore")
def restore_command(
    source: Annotated[str, typer.Argument(help="Archive path or s3://bucket/key")],
    yes: Annotated[bool, typer.Option("--yes", help="Replace the target database")] = False,
    i_know: Annotated[
        bool, typer.Option("--i-know", help="Needed as well for the production database (WARDROBE_ENV=production)")
    ] = False,
    target_url: Annotated[str | None, typer.Option(help="Database to replace (default WARDROBE_DATABASE_URL)")] = None,
) -> None:
    """Replace a database with an archive's content, after verifying the archive. Stop the API,
    workers and scheduler first; then `wardrobe migrate` upgrades from the archive's revision."""
    from wardrobe.modules.backup.service import restore_backup
    from wardrobe.settings import Environment, get_settings

    settings = get_settings()
    if not yes:
        typer.echo("error: restore replaces every table of the target database; add --yes", err=True)
        raise typer.Exit(2)
    live = target_url is None or target_url == settings.database_url
    if settings.env is Environment.PRODUCTION and live and not i_know:
        typer.echo("error: this is the production database (WARDROBE_ENV=production); add --i-know as well", err=True)
        raise typer.Exit(2)
    checked = _run(restore_backup(settings, source, target_url=target_url))
    revision = checked.manifest.alembic_revision if checked.manifest else None
    _report(checked, f"restored at revision {revision}; `wardrobe migrate` brings it to the code's head")
