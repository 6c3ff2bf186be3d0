from __future__ import annotations

from pathlib import Path

import click
from tqdm import tqdm

from pony_tasks.cli.common import PonyContext
from pony_tasks.storage import LocalObjectStore, open_store


@click.group("storage")
def storage_group() -> None:
    """The object store (file:// or s3://, from storage_url)."""


def _bar(total: int, description: str) -> tqdm:
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description, leave=False)


@storage_group.command("put")
@click.argument("key")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def storage_put(ctx: PonyContext, key: str, source: Path) -> None:
    """Upload file SOURCE as object KEY (atomic: readers never see a partial object)."""
    store = open_store(settings=ctx.settings)
    with _bar(source.stat().st_size, f"put {key}") as bar:
        store.put_file(key, source, progress=bar.update)
    click.echo(f"stored {source} as {store.url.rstrip('/')}/{key}")


@storage_group.command("get")
@click.argument("key")
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def storage_get(ctx: PonyContext, key: str, target: Path) -> None:
    """Download object KEY to file TARGET."""
    store = open_store(settings=ctx.settings)
    with _bar(store.size(key), f"get {key}") as bar:
        store.get_file(key, target, progress=bar.update)
    click.echo(f"wrote {target}")


@storage_group.command("ls")
@click.argument("prefix", default="")
@click.pass_obj
def storage_ls(ctx: PonyContext, prefix: str) -> None:
    """List keys starting with PREFIX."""
    for key in open_store(settings=ctx.settings).list(prefix):
        click.echo(key)


@storage_group.command("rm")
@click.argument("key")
@click.pass_obj
def storage_rm(ctx: PonyContext, key: str) -> None:
    """Delete object KEY."""
    if not open_store(settings=ctx.settings).delete(key):
        raise click.ClickException(f"no object with key {key!r}")
    click.echo(f"deleted {key}")


@storage_group.command("clean")
@click.option("--older-than", default=3600, show_default=True, help="Seconds since a temporary file was touched.")
@click.pass_obj
def storage_clean(ctx: PonyContext, older_than: int) -> None:
    """Remove temporary files that killed writers left in a file:// store (S3 needs no cleaning)."""
    store = open_store(settings=ctx.settings)
    if not isinstance(store, LocalObjectStore):
        click.echo("nothing to clean: S3 keeps unfinished uploads out of sight (use a bucket lifecycle rule)")
        return
    click.echo(f"removed {store.remove_stale_incoming(older_than)} stale temporary files")
