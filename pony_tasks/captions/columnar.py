"""Caption content for a whole chunk of posts at once, in polars (the first build's cold path).

The same rows as ``sets.ContentLineEncoder`` — it is the reference, and ``tests/captions`` compare the two line by
line — but computed column-wise: every post's tags are exploded into one long table, each distinct raw tag is
mapped to its caption form, token cost and frequency once (Python, cached), and the per-post steps of
``render.content_parts`` and ``tokens.prioritised`` become a join, a de-duplication, one sort and one aggregation,
run by polars' own threads. Per post only the JSON is parsed (by polars, not Python).

The steps, with what they stand for in ``content_parts``:

- a post with tag groups: ``protected`` = its character, OC, copyright and (optional) artist lists in that order;
  ``rest`` = its species and general lists, then its tags that no group lists (any group, ``meta`` included),
  sorted. A post without groups: its tags sorted, those starting ``artist:``/``oc:`` protected.
- raw tags → caption forms (``None``: blacklisted, left out); the first occurrence of each form kept — so a form is
  protected when it first appears among the protected tags — and the style cluster tag, when given, first.
- keep order: protected tags as they come, then the rest by corpus frequency (rarest first, ties as they come);
  running token costs; how many are protected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from pony_tasks.captions.periods import DEFAULT_PERIODS, Periods, date_tags
from pony_tasks.captions.render import (
    GROUP_ORDER,
    PROTECTED_GROUPS,
    RATING_TAGS,
    caption_form,
    source_by_hint,
    source_hint,
)
from pony_tasks.captions.tokens import tag_cost, tags_cost
from pony_tasks.styles import style_tag

if TYPE_CHECKING:
    import polars as pl


class ColumnarContentEncoder:
    """caption_content COPY text for chunks of MISSING_CONTENT_QUERY rows (one JSON object each)."""

    def __init__(
        self, *, include_artist: bool = True, frequencies: Mapping[str, int] | None = None,
        periods: Periods = DEFAULT_PERIODS, form: Callable[[str], str | None] = caption_form,
        element: Callable[[str], str],
    ) -> None:  # fmt: skip
        self.frequencies = dict(frequencies or {})
        self.periods = periods
        self._form, self._element = form, element
        self._tags: dict[str, tuple] = {}  # raw tag → (form, form id, cost, frequency, array element); form None
        self._form_ids: dict[str, int] = {}
        self._hints: dict[str, int] = {}  # raw tag → render.source_hint
        self._fixed: dict[tuple[str, str, int | None], tuple[int, str, str]] = {}
        groups = [g for g in GROUP_ORDER if include_artist or g != "artist"]
        self.protected_groups = [g for g in groups if g in PROTECTED_GROUPS]
        self.rest_groups = [g for g in groups if g not in PROTECTED_GROUPS]

    def encode(self, json_lines: Sequence[str], group_keys: Sequence[str]) -> str:
        """COPY CSV text (``sets.CONTENT_COLUMNS``) for ``json_lines``, one ``{"d","s","r","t","g","y","c"}`` object
        each; ``group_keys``: every key their tag groups may have (read with that schema, not inferred: 3× faster).
        Raises polars' error on a line that does not fit it (a tag group that is not a list of strings)."""
        import polars as pl

        schema = {"d": pl.String, "s": pl.String, "r": pl.String, "t": pl.List(pl.String),
                  "g": pl.Struct({key: pl.List(pl.String) for key in sorted(group_keys)}) if group_keys else pl.Null,
                  "y": pl.Int64, "c": pl.Int64}  # fmt: skip
        posts = pl.read_ndjson("\n".join(json_lines).encode(), schema=schema)
        posts = posts.with_row_index("i").with_columns(pl.col("t").fill_null([]))
        keep = self._keep_order(pl, posts)
        per_post = keep.group_by("i", maintain_order=True).agg(
            "element", running=pl.col("cost").cum_sum(), protected=pl.col("protected").sum()).select(
            "i", pl.col("element").list.join(",").alias("array"),
            pl.col("running").cast(pl.List(pl.String)).list.join(","), "protected")  # fmt: skip
        out = posts.select("i", "d", "s", "r", "y").join(self._sources(pl, posts), on="i", how="left",
                                                         maintain_order="left")  # fmt: skip
        out = out.join(per_post, on="i", how="left", maintain_order="left")
        fixed = self._fixed_frame(pl, out)
        out = out.join(fixed, on=["source", "r", "y"], how="left", nulls_equal=True, maintain_order="left")
        line = pl.concat_str(
            pl.col("d"), pl.lit(","), pl.col("source"), pl.lit(","), pl.col("rating_tag"),
            pl.lit(',"{'), pl.col("array").fill_null(""), pl.lit('}","{'), pl.col("running").fill_null(""),
            pl.lit('}",'), pl.col("fixed").cast(pl.String), pl.lit(',"{'), pl.col("dates"), pl.lit('}","'),
            pl.col("date_text"), pl.lit('",'), pl.col("protected").fill_null(0).cast(pl.String),
        )  # fmt: skip
        return out.select(line).write_csv(include_header=False, quote_style="never")

    def _keep_order(self, pl, posts: pl.DataFrame) -> pl.DataFrame:  # noqa: ANN001 - the polars module
        """One row per kept content tag: (i, cost, element, protected), in keep order within each post."""
        fields = posts.schema["g"].fields if posts.schema["g"] != pl.Null else []
        names = [f.name for f in fields]

        def group_lists(groups: list[str]) -> list[pl.Expr]:
            return [pl.col("g").struct.field(g).fill_null([]) for g in groups if g in names]

        has_groups = pl.any_horizontal([pl.col("g").struct.field(n).is_not_null() for n in names]) if names else (
            pl.lit(False))  # fmt: skip
        grouped, flat = posts.filter(has_groups), posts.filter(~has_groups)

        def exploded(frame: pl.DataFrame, tags: pl.Expr, section: int | pl.Expr, ordered: bool) -> pl.DataFrame:
            listed = frame.select("i", tags.alias("raw"), pl.int_ranges(0, tags.list.len()).alias("group_position"))
            rows = listed.explode(["raw", "group_position"]).filter(pl.col("raw").is_not_null())
            return rows.with_columns(section=section, group_position=pl.col("group_position") if ordered else 0)

        # sections: 0 protected, 1 species and general (as listed), 2 tags no group lists / a flat list (sorted)
        parts = [exploded(flat, pl.col("t"), pl.when(pl.col("raw").str.starts_with("artist:")
                                                   | pl.col("raw").str.starts_with("oc:")).then(0).otherwise(2),
                          ordered=False)]  # fmt: skip
        if grouped.height:
            for section, groups in ((0, self.protected_groups), (1, self.rest_groups)):
                if lists := group_lists(groups):
                    parts.append(exploded(grouped, pl.concat_list(lists), section, True))
            # the tags no group lists: an anti-join (polars' list.set_difference panics on some chunk layouts)
            listed = exploded(grouped, pl.concat_list(group_lists(names)), 2, False)
            parts.append(exploded(grouped, pl.col("t"), 2, False).join(listed, on=["i", "raw"], how="anti"))
        schema = {"i": pl.UInt32, "raw": pl.String, "group_position": pl.Int64, "section": pl.Int32}
        sequence = pl.concat([part.select(pl.col(n).cast(t) for n, t in schema.items()) for part in parts])
        tags = self._tag_frame(pl, sequence.get_column("raw").unique().sort())  # raw_order: the raws' sorted order
        long = sequence.join(tags, on="raw", how="inner").filter(pl.col("form").is_not_null()).with_columns(
            protected=pl.col("section") == 0).drop("raw")  # fmt: skip
        styles = posts.filter(pl.col("c").is_not_null())
        if styles.height:
            style_rows = styles.select("i", "c").join(self._style_frame(pl, styles.get_column("c").unique()), on="c")
            long = pl.concat([long, style_rows.select(long.columns)], how="vertical_relaxed")
        # One sort: keep order (protected first as they come, then rarest first), ties in the order content_parts
        # lists the tags (section, position in its group, a sorted section by raw tag). A form seen twice in a post
        # sorts its first occurrence first (protected before not; the same form has the same frequency), so the
        # first of each (post, form) after the sort is the one content_parts keeps.
        rank = pl.when(pl.col("protected")).then(0).otherwise(pl.col("frequency"))
        long = long.sort([pl.col("i"), ~pl.col("protected"), rank, pl.col("section"), pl.col("group_position"),
                          pl.col("raw_order")])  # fmt: skip
        first = (pl.col("i").cast(pl.UInt64) * (1 << 32) + pl.col("form_id")).is_first_distinct()
        return long.filter(first).select("i", "cost", "element", "protected")

    def _tag_frame(self, pl, raws: pl.Series) -> pl.DataFrame:  # noqa: ANN001
        """(raw, raw_order, form, form_id, cost, frequency, element) for ``raws`` (sorted: raw_order is the index)."""
        cache, frequencies, ids = self._tags, self.frequencies, self._form_ids
        rows = []
        for order, raw in enumerate(raws.to_list()):
            if raw not in cache:
                form = self._form(raw)
                cache[raw] = (form, ids.setdefault(form, len(ids)), tag_cost(form), frequencies.get(form, 0),
                              self._element(form)) if form else (None, 0, 0, 0, "")  # fmt: skip
            rows.append((raw, order, *cache[raw]))
        return pl.DataFrame(rows, schema={"raw": pl.String, "raw_order": pl.UInt32, "form": pl.String,
                                          "form_id": pl.UInt64, "cost": pl.Int64, "frequency": pl.Int64,
                                          "element": pl.String}, orient="row")  # fmt: skip

    def _style_frame(self, pl, clusters: pl.Series) -> pl.DataFrame:  # noqa: ANN001
        """The style cluster tags as content rows: protected, ahead of every site tag (section -1)."""
        rows = []
        for cluster in clusters.to_list():
            form = style_tag(cluster)
            rows.append((cluster, form, 1 << 31, tag_cost(form), 0, self._element(form)))
        frame = pl.DataFrame(rows, schema={"c": pl.Int64, "form": pl.String, "form_id": pl.UInt64, "cost": pl.Int64,
                                           "frequency": pl.Int64, "element": pl.String}, orient="row")  # fmt: skip
        return frame.with_columns(group_position=pl.lit(0, pl.Int64), section=pl.lit(-1, pl.Int32),
                                  raw_order=pl.lit(0, pl.UInt32), protected=pl.lit(True))  # fmt: skip

    def _sources(self, pl, posts: pl.DataFrame) -> pl.DataFrame:  # noqa: ANN001
        """(i, source tag) as render.source_tag picks it: render.source_by_hint of the site and the strongest
        render.source_hint among the post's tags (found by a join with the few hint tags)."""
        tags = posts.select("i", pl.col("t").alias("raw")).explode("raw").filter(pl.col("raw").is_not_null())
        hints = self._hints
        for raw in tags.get_column("raw").unique().to_list():
            if raw not in hints:
                hints[raw] = source_hint(raw)
        hinted = pl.DataFrame([(raw, hint) for raw, hint in hints.items() if hint],
                              schema={"raw": pl.String, "hint": pl.Int8}, orient="row")  # fmt: skip
        best = tags.join(hinted, on="raw").group_by("i").agg(pl.col("hint").min())
        sites = posts.select("i", "s").join(best, on="i", how="left")
        pairs = sites.select("s", "hint").unique()  # a few (site, hint) pairs: the rule applied in Python
        pairs = pairs.with_columns(source=pl.Series([source_by_hint(site, hint) for site, hint in pairs.iter_rows()],
                                                    dtype=pl.String))  # fmt: skip
        return sites.join(pairs, on=["s", "hint"], how="left", nulls_equal=True).select("i", "source")

    def _fixed_frame(self, pl, out: pl.DataFrame) -> pl.DataFrame:  # noqa: ANN001
        rows = []
        for source, rating, year in out.select("source", "r", "y").unique().iter_rows():
            key = (source, rating, year)
            if key not in self._fixed:
                rating_tag, date = RATING_TAGS[rating], date_tags(year, self.periods)
                self._fixed[key] = (rating_tag, tags_cost((source, rating_tag, *date)), ",".join(date),
                                    ", ".join(date))  # fmt: skip
            rows.append((*key, *self._fixed[key]))
        return pl.DataFrame(rows, schema={"source": pl.String, "r": pl.String, "y": out.schema["y"],
                                          "rating_tag": pl.String, "fixed": pl.Int64, "dates": pl.String,
                                          "date_text": pl.String}, orient="row")  # fmt: skip
