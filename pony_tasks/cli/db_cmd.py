from __future__ import annotations

import click

from pony_tasks.cli.common import PonyContext
from pony_tasks.db import connect, database_url, migration_status, upgrade
from pony_tasks.db.embedded import embedded_server_running, ensure_embedded_server, stop_embedded_server


@click.group("db")
def db_group() -> None:
    """The PostgreSQL database: migrations and the embedded server."""


@db_group.command("upgrade")
@click.pass_obj
def db_upgrade(ctx: PonyContext) -> None:
    """Apply pending migrations (safe to re-run: does nothing when up to date)."""
    with connect(ctx.settings, check_schema=False) as conn:
        applied = upgrade(conn)
    if not applied:
        click.echo("database is up to date")
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")


@db_group.command("status")
@click.pass_obj
def db_status(ctx: PonyContext) -> None:
    """List migrations with when each was applied."""
    with connect(ctx.settings, check_schema=False) as conn:
        states = migration_status(conn)
    for state in states:
        when = state.applied_at.isoformat(timespec="seconds") if state.applied_at else "pending"
        flag = "" if state.checksum_matches in (True, None) else "  (FILE CHANGED since applied)"
        click.echo(f"{state.version:04d}_{state.name:<40} {when}{flag}")
    pending = sum(s.applied_at is None for s in states)
    click.echo(f"{len(states) - pending} applied, {pending} pending" + ("; run `pony db upgrade`" if pending else ""))


@db_group.command("start")
@click.pass_obj
def db_start(ctx: PonyContext) -> None:
    """Start the embedded server and keep it running after this command exits (until `pony db stop`)."""
    if ctx.settings.database_url:
        raise click.ClickException("PONY_DATABASE_URL is set: the database is external, nothing to start")
    ensure_embedded_server(ctx.settings.resolved_home, keep_running=True)
    click.echo(f"embedded PostgreSQL running from {ctx.settings.embedded_pgdata}")


@db_group.command("stop")
@click.pass_obj
def db_stop(ctx: PonyContext) -> None:
    """Stop the embedded server cleanly (pg_ctl stop)."""
    if stop_embedded_server(ctx.settings.resolved_home):
        click.echo("embedded PostgreSQL stopped")
    else:
        click.echo("embedded PostgreSQL was not running")


@db_group.command("url")
@click.option("--show-password", is_flag=True, help="Print an external URL's password instead of masking it.")
@click.pass_obj
def db_url(ctx: PonyContext, show_password: bool) -> None:
    """Print the connection URL (for psql; the embedded server listens on a Unix socket in its data directory)."""
    url = database_url(ctx.settings)
    if ctx.settings.database_url and not show_password:
        from psycopg2.extensions import make_dsn, parse_dsn

        parts = parse_dsn(url)
        if "password" in parts:
            parts["password"] = "********"
        url = make_dsn(**parts)
    click.echo(url)
    if not ctx.settings.database_url and not embedded_server_running(ctx.settings.resolved_home):
        click.echo("# note: the embedded server stops when this command exits; run `pony db start` first", err=True)
