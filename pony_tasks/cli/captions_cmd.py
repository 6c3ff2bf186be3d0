from __future__ import annotations

import random

import click

from pony_tasks.captions.quality import band_for, quality_tags
from pony_tasks.captions.render import RATING_TAGS, build_caption, sample_caption
from pony_tasks.captions.sets import STYLE_MODES, active_set, regenerate, rollback
from pony_tasks.cli.common import PonyContext
from pony_tasks.db import connect


@click.group("captions")
def captions_group() -> None:
    """Training captions with quality tags."""


@captions_group.command("preview")
@click.option("--scheme", type=click.Choice(["v6", "v7"]), default="v7", show_default=True)
@click.option("--percentile", type=click.FloatRange(0, 1), required=True, help="Aesthetic percentile, 0..1.")
@click.option("--rating", type=click.Choice(sorted(RATING_TAGS)), default="general", show_default=True)
@click.option("--site", type=click.Choice(["danbooru", "e621", "derpibooru", "gelbooru"]), default="danbooru",
              show_default=True)  # fmt: skip
@click.option("--tags", default="1girl solo smile", show_default=True, help="Space-separated site tags.")
@click.option("--seed", default=0, show_default=True, help="Seed of the training-time samples shown.")
@click.option("--samples", default=3, show_default=True, type=click.IntRange(min=0), help="Training captions to show.")
@click.option("--floor", default=1, show_default=True, type=click.IntRange(1, 9), help="Lowest band (v7).")
@click.option("--token-limit", default=75, show_default=True, type=click.IntRange(1, 1000), help="CLIP tokens.")
@click.option("--year", type=click.IntRange(1990, 2100), help="Upload year (adds the year and period tags).")
def captions_preview(
    scheme: str, percentile: float, rating: str, site: str, tags: str, seed: int, samples: int, floor: int,
    token_limit: int, year: int | None,
) -> None:  # fmt: skip
    """Print the caption one image with these properties would get, and a few training-time samples of it."""
    band = band_for(percentile, floor=floor)
    caption = build_caption(quality_tags(scheme, band, floor), site, rating, {}, tags.split(),
                            token_limit=token_limit, year=year)  # fmt: skip
    click.echo(f"band {band} (percentile {percentile:.2f}), scheme {scheme}, {caption.tokens} of {token_limit} tokens "
               "without score_K_up tags" + (f", {caption.dropped} tags dropped to fit" if caption.dropped else "")
               + ("" if caption.up_room is None else f"; a line carries at most {caption.up_room} score_K_up tags"))
    click.echo(f"stored:   {caption.render()}")
    rng = random.Random(seed)
    for index in range(samples):
        click.echo(f"sample {index + 1}: {sample_caption(caption, rng)}")


@captions_group.command("regenerate")
@click.option("--scheme", type=click.Choice(["v6", "v7"]), default="v7", show_default=True)
@click.option("--aesthetic-version", type=int, help="Default: the active aesthetic model.")
@click.option("--floor", default=1, show_default=True, type=click.IntRange(1, 9), help="Lowest band.")
@click.option("--no-artist", is_flag=True, help="Leave artist tags out of captions.")
@click.option("--no-activate", is_flag=True, help="Build the set but keep the current one active.")
@click.option("--token-limit", type=click.IntRange(1, 1000),
              help="CLIP tokens per caption (default: the caption_token_limit setting, 75; kohya's "
                   "--max_token_length 150/225 allow more).")  # fmt: skip
@click.option("--refresh-frequencies", is_flag=True,
              help="Recount how common each tag is (the drop order) instead of reusing the last count.")  # fmt: skip
@click.option("--periods", default="newest=2022,recent=2019,mid=2015,early=2011,oldest", show_default=True,
              help="Period tags by upload year, newest first (word=first year; the last open-ended); 'none': no "
                   "year or period tags.")  # fmt: skip
@click.option("--style-tags", type=click.Choice(STYLE_MODES),
              help="style_cluster_N tags of the active style clustering: beside the artist tags, instead of them, or "
                   "none (default: the caption_style_tags setting, add). Without an active clustering: none.")
@click.option("--style-version", type=int, help="Style clustering to tag from (default: the active one).")
@click.option("--force", is_flag=True, help="Build a new set even when its inputs are those of an existing set.")
@click.pass_obj
def captions_regenerate(
    ctx: PonyContext, scheme: str, aesthetic_version: int | None, floor: int, no_artist: bool, no_activate: bool,
    token_limit: int | None, refresh_frequencies: bool, periods: str, style_tags: str | None,
    style_version: int | None, force: bool,
) -> None:  # fmt: skip
    """Build a new caption set for every scored image, each caption within the token limit, and switch to it
    atomically."""
    from pony_tasks.captions.periods import parse_periods
    from pony_tasks.captions.tokens import BudgetTooSmall

    try:
        ranges = parse_periods(periods)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--periods") from None
    limit = token_limit or ctx.settings.caption_token_limit
    with connect(ctx.settings) as conn:
        try:
            result = regenerate(conn, scheme=scheme, aesthetic_version_id=aesthetic_version, floor=floor,
                                include_artist=not no_artist, activate=not no_activate, token_limit=limit,
                                refresh_frequencies=refresh_frequencies, periods=ranges,
                                style_tags=style_tags or ctx.settings.caption_style_tags,
                                style_version=style_version, show_progress=None, force=force)  # fmt: skip
        except BudgetTooSmall as exc:
            raise click.BadParameter(str(exc), param_hint="--token-limit") from None
        if result.unchanged:
            state = "kept inactive" if no_activate else "active"
            click.echo(f"caption set {result.set_id} ({result.captions} captions) was made from exactly these inputs "
                       f"(aesthetic version, scheme, settings, every work's tags and score): no new set; set "
                       f"{result.set_id} {state} (--force builds one anyway)")  # fmt: skip
            return
        with conn.cursor() as cur:
            cur.execute("SELECT captions_trimmed, tags_dropped, captions_thinnable, style_mode, style_version "
                        "FROM caption_set WHERE set_id = %s", (result.set_id,))  # fmt: skip
            trimmed, dropped, thinnable, style_mode, used_style = cur.fetchone()
    state = "kept inactive" if no_activate else "now active"
    click.echo(f"caption set {result.set_id}: {result.captions} captions, scheme {scheme}, aesthetic version "
               f"{result.aesthetic_version_id}; {state} ({result.contents_computed} post contents computed, the rest "
               f"reused from the cache); token limit {limit}: {trimmed} captions cut, {dropped} tags dropped, "
               f"{thinnable} whose lines may carry fewer score_K_up tags to keep their protected tags; style "
               f"tags: {style_mode}" + (f" (clustering v{used_style})" if used_style else ""))  # fmt: skip


@captions_group.command("lines")
@click.option("--variants", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Training lines per caption (as `pony export dataset --variants`).")
@click.option("--exact", is_flag=True, help="Also count every line's CLIP tokens exactly (slower).")
@click.pass_obj
def captions_lines(ctx: PonyContext, variants: int, exact: bool) -> None:
    """What the training lines of the active caption set hold, per band: median content tags a line, lines
    without content, lines that carry fewer score_K_up tags to keep their protected tags, the most tokens a line
    costs — the lines an export writes, without writing them."""
    from pony_tasks.captions.lines import LineStats, has_content
    from pony_tasks.captions.tokens import count_tokens
    from pony_tasks.export.selection import active_set_info, iter_samples

    stats, most_exact, captions = LineStats(), 0, 0
    with connect(ctx.settings) as conn:
        try:
            caption_set = active_set_info(conn)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None
        for sample in iter_samples(conn, caption_set, None, None, None):  # streamed: any set size
            lines = sample.lines(variants, caption_set.token_limit)
            stats.add(sample.band, lines, has_content(sample.content))
            captions += 1
            if exact:
                most_exact = max([most_exact, *(count_tokens(line.plain(random.Random(0))) for line in lines)])
    click.echo(f"caption set {caption_set.set_id} ({caption_set.scheme}, ≤ {caption_set.token_limit} tokens): "
               f"{captions} captions, {stats.lines} lines")  # fmt: skip
    click.echo("band  lines  median content tags a line")
    for band in sorted(stats.content_per_line, reverse=True):
        click.echo(f"{band:>4}  {sum(stats.content_per_line[band].values()):>5}  {stats.median([band]):g}")
    high, low = stats.median([8, 9]), stats.median([1, 2, 3, 4])
    if high is not None and low:
        click.echo(f"bands 8-9 median {high:g} = {high / low:.0%} of bands 1-4's {low:g}")
    click.echo(f"lines without content (their caption has some): {stats.without_content}; lines carrying fewer "
               f"score_K_up tags to keep their protected tags: {stats.thinned}; most tokens a line costs: "
               f"{stats.most_tokens}" + (f" (exact CLIP count: {most_exact})" if exact else ""))  # fmt: skip


@captions_group.command("list")
@click.pass_obj
def captions_list(ctx: PonyContext) -> None:
    """Caption sets, newest first; * marks the active one."""
    with connect(ctx.settings) as conn, conn.cursor() as cur:
        active = active_set(conn)
        cur.execute("SELECT set_id, scheme, aesthetic_version_id, captions, created_at, token_limit, captions_trimmed, "
                    "tags_dropped FROM caption_set ORDER BY set_id DESC")  # fmt: skip
        for set_id, scheme, version, count, created, limit, trimmed, dropped in cur.fetchall():
            marker = "*" if set_id == active else " "
            budget = f", ≤ {limit} tokens ({trimmed} cut, {dropped} tags dropped)" if limit else ""
            click.echo(f"{marker} set {set_id}: {scheme}, aesthetic v{version}, {count} captions{budget}, "
                       f"{created:%Y-%m-%d %H:%M}")  # fmt: skip


@captions_group.command("rollback")
@click.argument("set_id", type=int, required=False)
@click.pass_obj
def captions_rollback(ctx: PonyContext, set_id: int | None) -> None:
    """Make SET_ID (default: the previously active set) the active caption set again."""
    with connect(ctx.settings) as conn:
        try:
            restored = rollback(conn, set_id)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"caption set {restored} is active again")
