from __future__ import annotations

import json

import click

from pony_tasks.cli.common import SITE, PonyContext


def _site_posts(ctx, _param, values: tuple[str, ...]) -> dict[str, int]:  # noqa: ANN001 - click's callback
    posts = {}
    known = sorted(ctx.ensure_object(PonyContext).settings.sites) if values else []
    for value in values:
        site, _, number = value.partition("=")
        if site not in known or not number.replace("_", "").isdigit():
            raise click.BadParameter(f"{value!r}: give SITE=POSTS, SITE one of {', '.join(known)}")
        posts[site] = int(number.replace("_", ""))
    return posts


@click.command("plan")
@click.option("--site", "sites", multiple=True, type=SITE,
              help="Plan these sites only (repeat; default: every enabled site).")
@click.option("--posts", multiple=True, callback=_site_posts, metavar="SITE=POSTS",
              help="A site's size, e.g. --posts e621=5000000 (repeat).")
@click.option("--live", is_flag=True,
              help="Ask each other site for its newest post id (one polite request a site).")
@click.option("--mean-file-mib", type=click.FloatRange(min=0, min_open=True), default=1.5, show_default=True,
              help="Mean size of a site's original file.")
@click.option("--gpu-images-per-second", type=click.FloatRange(min=0, min_open=True), default=400.0,
              show_default=True, help="Embedding speed of one GPU (benchmarks/embed.py measures yours).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.pass_obj
def plan_command(ctx: PonyContext, sites: tuple[str, ...], posts: dict[str, int], live: bool, mean_file_mib: float,
                 gpu_images_per_second: float, as_json: bool) -> None:  # fmt: skip
    """Before the first run: the requests and hours to page each site's metadata, the deletion sweep's requests a
    day, the images, bytes and days to fetch, the object-store and database sizes and the embedding GPU hours —
    from the sites' sizes and these settings, with every assumption named. Read-only."""
    from pony_tasks.plan import make_plan

    plan = make_plan(ctx.settings, list(sites) or None, posts, live, mean_file_mib, gpu_images_per_second)
    click.echo(json.dumps(plan.as_dict(), indent=2) if as_json else plan.table())
