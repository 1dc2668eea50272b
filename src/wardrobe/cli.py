"""Command line: ``wardrobe serve | nginx-config | migrate | seed | worker | scheduler | admin create-user |
admin reset-totp | crypto rotate | storage gc | storage apply-lifecycle | plans load | plans list |
backup create | backup verify | backup restore``."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError

from wardrobe.modules.backup.commands import backup_app
from wardrobe.modules.billing.commands import plans_app
from wardrobe.modules.storage.commands import storage_app

app = typer.Typer(help="Wardrobe: AI image platform backend", no_args_is_help=True, add_completion=False)
admin_app = typer.Typer(help="Administrative commands", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
crypto_app = typer.Typer(help="Envelope encryption keys (distributors' ID numbers, TOTP secrets)", no_args_is_help=True)
app.add_typer(crypto_app, name="crypto")
app.add_typer(storage_app, name="storage")
app.add_typer(plans_app, name="plans")
app.add_typer(backup_app, name="backup")


async def _prepare(migrate: bool, seed: bool) -> None:
    from wardrobe.settings import get_settings
    from wardrobe.wiring import build_infra, close_infra, prepare_database

    settings = get_settings().model_copy(update={"auto_migrate": migrate, "seed_demo_data": seed})
    infra = build_infra(settings)
    try:
        await prepare_database(infra)
    finally:
        await close_infra(infra)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default WARDROBE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default WARDROBE_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="API processes (default WARDROBE_WORKERS)")] = None,
    socketio_port_base: Annotated[
        int | None,
        typer.Option(
            help="With --workers N, process i also listens on this + i, for nginx's Socket.IO routing "
            "(default WARDROBE_SOCKETIO_PORT_BASE, else --port + 1)"
        ),
    ] = None,
) -> None:
    """Run the API. Embedded by default: SQLite under var/, migrations and demo data applied.

    With --workers N, behind nginx configured by `wardrobe nginx-config` (README, production)."""
    import uvicorn

    from wardrobe.core.logging import configure_logging
    from wardrobe.serving import supervisor
    from wardrobe.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    n = workers or settings.workers
    port = port or settings.port
    if n > 1 and settings.embedded:
        # Embedded mode keeps limits, cache and pushes in one process's memory: several processes
        # would each count and cache on their own.
        typer.echo("error: --workers > 1 needs WARDROBE_REDIS_URL (shared limits, cache and events)", err=True)
        raise typer.Exit(2)
    ports: list[int] = []
    if n > 1:
        base = settings.socketio_port_base if socketio_port_base is None else socketio_port_base
        try:
            ports = supervisor.socketio_ports(port, base, n)
        except ValueError as exc:
            typer.echo(f"error: --socketio-port-base: {exc}", err=True)
            raise typer.Exit(2) from exc
        # Migrate and seed once here, not racing in every worker process.
        asyncio.run(_prepare(settings.auto_migrate, settings.seed_demo_data))
        os.environ["WARDROBE_AUTO_MIGRATE"] = "false"
        os.environ["WARDROBE_SEED_DEMO_DATA"] = "false"
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            metrics_dir = settings.var_dir / "prometheus"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(parents=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    options: dict[str, Any] = {
        "factory": True,
        "host": host or settings.host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "log_config": None,
        # The client address is taken from X-Forwarded-For by our own middleware, only for
        # WARDROBE_TRUSTED_PROXIES (core/edge_limits.py), the same under any server.
        "proxy_headers": False,
        "timeout_graceful_shutdown": int(settings.shutdown_grace_seconds) or None,
        # Websockets carry only Socket.IO, whose Engine.IO layer pings every socket itself (every
        # 25 s, dropped after 20 s of silence): uvicorn's own ping would be a second timer and
        # frame per socket for the same check.
        "ws_ping_interval": None,
        "ws_per_message_deflate": settings.socket_compression,
    }
    if n > 1:
        supervisor.run(uvicorn.Config("wardrobe.app:create_served_app", workers=n, **options), ports)
    else:
        uvicorn.run("wardrobe.app:create_served_app", **options)


@app.command("nginx-config")
def nginx_config(
    workers: Annotated[int | None, typer.Option(help="API processes of `serve` (default WARDROBE_WORKERS)")] = None,
    listen: Annotated[str, typer.Option(help="nginx's listen directive: port or address:port")] = "80",
    server_name: Annotated[str, typer.Option(help="nginx's server_name")] = "_",
    api_host: Annotated[
        str | None, typer.Option(help="Where nginx reaches the API (default WARDROBE_HOST; 0.0.0.0 = this machine)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="The API's shared port (default WARDROBE_PORT)")] = None,
    socketio_port_base: Annotated[
        int | None, typer.Option(help="As given to `serve` (default WARDROBE_SOCKETIO_PORT_BASE, else --port + 1)")
    ] = None,
    access_log: Annotated[str, typer.Option(help="nginx access log file")] = "/var/log/nginx/wardrobe.access.log",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout")] = None,
) -> None:
    """Print the nginx site for `wardrobe serve --workers N`: the API, Socket.IO sessions routed to
    the process that holds them, body caps, timeouts and forwarded client addresses."""
    import sys

    from wardrobe.serving import nginx
    from wardrobe.settings import get_settings

    settings = get_settings()
    n = workers or settings.workers
    args = [f" --workers {n}"] if n > 1 else []
    try:
        site = nginx.site(
            settings,
            workers=n,
            listen=listen,
            server_name=server_name,
            api_host=api_host,
            api_port=port,
            socketio_port_base=socketio_port_base,
            access_log=access_log,
            command_args="".join(args),
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    text = nginx.render(site)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


@app.command()
def migrate() -> None:
    """Apply every pending database migration."""
    asyncio.run(_prepare(migrate=True, seed=False))
    typer.echo("migrations applied")


@app.command()
def seed() -> None:
    """Create the demo data (idempotent)."""
    asyncio.run(_prepare(migrate=False, seed=True))
    typer.echo("demo data ready")


@app.command()
def worker() -> None:
    """Run tasks from the queue (production: Redis stream broker), until SIGTERM/SIGINT."""
    asyncio.run(_run_worker())


async def _run_worker() -> None:
    import signal

    from wardrobe.core import telemetry
    from wardrobe.core.heap import settle_after_startup
    from wardrobe.core.logging import configure_logging, get_logger
    from wardrobe.realtime.events import manager_emitter
    from wardrobe.realtime.hub import client_manager
    from wardrobe.settings import get_settings
    from wardrobe.wiring import build_infra, close_infra
    from wardrobe.worker.telemetry import process_telemetry

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    telemetry.setup(settings.otel_endpoint, role="worker", sample_ratio=settings.otel_sample_ratio)
    log = get_logger("wardrobe.worker")
    # Pushes go out through the write-only Redis manager; a worker's relay may also be the one that
    # takes a revocation, which it then publishes to the API processes.
    emit = manager_emitter(client_manager(settings, write_only=True))
    infra = build_infra(settings, consume_tasks=True, dedicated_worker=True, emit=emit)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await infra.cache.start()  # operators' switches reach this worker at once
    await infra.runtime.start()
    settle_after_startup()  # core/heap.py
    log.info("worker_started", worker=infra.runtime.engine.worker_id)
    try:
        async with process_telemetry(infra, "worker"):  # /metrics, /health, the probe
            await stop.wait()
    finally:
        # Leases of tasks still running expire and another worker resumes them.
        await close_infra(infra)
        log.info("worker_stopped")
        telemetry.shutdown()


@app.command()
def scheduler(
    once: Annotated[bool, typer.Option(help="Run each periodic job once and exit")] = False,
) -> None:
    """Run the periodic jobs (invite-code pool refill, expired auth data cleanup, payment
    reconciliation, membership expiry, storage housekeeping). Several may run: the one holding the
    leader lock in Redis runs the jobs, the others stand by; until SIGTERM/SIGINT."""
    asyncio.run(_run_scheduler(once))


async def _run_scheduler(once: bool) -> None:
    import signal

    from wardrobe.core import telemetry
    from wardrobe.core.logging import configure_logging
    from wardrobe.settings import get_settings
    from wardrobe.wiring import build_infra, close_infra
    from wardrobe.worker.scheduler import run_scheduler
    from wardrobe.worker.telemetry import process_telemetry

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    telemetry.setup(settings.otel_endpoint, role="scheduler", sample_ratio=settings.otel_sample_ratio)
    infra = build_infra(settings)
    # SIGTERM/SIGINT: the job running finishes, then the leader lock is released for a standby.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if once:
            await run_scheduler(infra, once=True, stop=stop)
            return
        async with process_telemetry(infra, "scheduler"):  # /metrics, /health, the probe
            await run_scheduler(infra, stop=stop)
    finally:
        await close_infra(infra)
        telemetry.shutdown()


@admin_app.command("create-user")
def create_user(
    phone: Annotated[str, typer.Option(help="Mainland mobile number")],
    password: Annotated[str, typer.Option(help="At least 8 characters, letters and digits")],
    role: Annotated[str, typer.Option(help="admin | operator | distributor | user")] = "user",
) -> None:
    """Create an account with a password and a role."""
    from wardrobe.modules.admin.schemas import AdminUserCreate

    try:
        body = TypeAdapter(AdminUserCreate).validate_python({"phone": phone, "password": password, "role": role})
    except ValidationError as exc:
        for err in exc.errors():
            typer.echo(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}", err=True)
        raise typer.Exit(2) from exc
    user_id = asyncio.run(_create_user(body.phone, body.password, body.role))
    typer.echo(f"created user {user_id} with role {body.role}")
    from wardrobe.settings import get_settings

    if body.role == "admin" and get_settings().admin_totp_enforced:
        typer.echo(
            "admin routes answer this account 403 TOTP_ENROLMENT_REQUIRED until it enrols an authenticator app: "
            "log in with the password, POST /api/v1/auth/totp/setup {password}, scan the otpauth URI, "
            "POST /api/v1/auth/totp/enable {code}, then log in with totp_code (docs/operations.md, Staff sign-in)"
        )


async def _create_user(phone: str, password: str, role: str) -> int:
    from wardrobe.core.db import unit_of_work
    from wardrobe.core.errors import AppError
    from wardrobe.modules.admin import service as admin_service
    from wardrobe.modules.users.service import SignupPolicy
    from wardrobe.settings import get_settings
    from wardrobe.wiring import build_infra, close_infra

    infra = build_infra(get_settings())
    try:
        async with unit_of_work(infra.session_factory) as session:
            user = await admin_service.create_user(
                session,
                actor_id=None,
                phone=phone,
                password=password,
                role=role,
                policy=SignupPolicy.of(infra.settings),
            )
            return user.id
    except AppError as exc:
        typer.echo(f"error: {exc.code.name} {exc.data or ''}", err=True)
        raise typer.Exit(1) from exc
    finally:
        await close_infra(infra)


@admin_app.command("reset-totp")
def reset_totp(
    phone: Annotated[str, typer.Option(help="The account's mobile number")],
    reason: Annotated[str, typer.Option(help="Why, for the audit log (2-500 characters)")] = "authenticator lost",
) -> None:
    """End an account's TOTP (a lost authenticator) and every session of it; audited. The owner then
    logs in with the password and enrols again."""
    from wardrobe.modules.auth.phone import normalize_phone

    try:
        phone = normalize_phone(phone)
    except ValueError as exc:
        typer.echo(f"phone: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not 2 <= len(reason.strip()) <= 500:
        typer.echo("reason: 2 to 500 characters", err=True)
        raise typer.Exit(2)
    user_id, revoked = asyncio.run(_reset_totp(phone, reason.strip()))
    typer.echo(f"TOTP of user {user_id} reset; {revoked} sessions ended")


async def _reset_totp(phone: str, reason: str) -> tuple[int, int]:
    from wardrobe.core.db import unit_of_work
    from wardrobe.core.errors import AppError
    from wardrobe.modules.auth import totp
    from wardrobe.settings import get_settings
    from wardrobe.wiring import build_infra, close_infra

    infra = build_infra(get_settings())
    try:
        async with unit_of_work(infra.session_factory) as session:
            return await totp.reset(session, phone=phone, actor_id=None, reason=reason)
    except AppError as exc:
        typer.echo(f"error: {exc.code.name} {exc.data or ''}", err=True)
        raise typer.Exit(1) from exc
    finally:
        await close_infra(infra)


@crypto_app.command("rotate")
def crypto_rotate(
    new_key: Annotated[
        bool, typer.Option("--new-key", help="First add a new master key version (local key file) and make it current")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows re-wrapped per transaction")] = 200,
) -> None:
    """Re-wrap every stored data key under the current master key, while the service runs.

    Records under older versions keep opening until they are moved; running it again moves only
    what is still on an old key."""
    from wardrobe.modules.crypto.keys import EnvelopeError
    from wardrobe.modules.distributors.commands import run_rotation
    from wardrobe.settings import get_settings

    try:
        asyncio.run(run_rotation(get_settings(), new_key=new_key, batch_size=batch_size, echo=typer.echo))
    except (EnvelopeError, ValueError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def main() -> None:
    app()


if __name__ == "__main__":
    main()
