"""What a model's users need beside the data: a dataset card, AUTOMATIC1111 styles, plain prompt prefixes.

A model trained on these captions learns the quality tags; most UIs do not add them, so its users must type them.
Every export therefore carries ``README.md`` (a Hugging Face dataset card: counts per band, rating and site; the
quality scheme and its percentile thresholds; the token limit; how to prompt; the measured control of each tag when
a fine-tune on this caption set was evaluated), ``styles.csv`` (AUTOMATIC1111's styles file: one style per quality
level, ``{prompt}`` where the user's prompt goes) and ``quality-prefixes.txt`` (the same prefixes, one per line).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field

import psycopg2.extensions

from pony_tasks.captions.lines import LineStats
from pony_tasks.captions.quality import DEFAULT_THRESHOLDS, V6_LOWEST_UP, quality_tags
from pony_tasks.export.kohya import trainer_command
from pony_tasks.export.selection import CaptionSetInfo, ExportSample


def quality_levels(scheme: str, floor: int = 1) -> list[tuple[str, str]]:
    """(style name, prompt prefix) per quality level, best first. V6: the chain Pony V6 was trained with
    (``score_9, score_8_up, …, score_4_up``); V7: the short tags (``score_9``; ``score_8_up`` … ``score_K_up``),
    each a level of its own because V7 trained them independently."""
    if scheme == "v6":
        return [(f"Pony V6 score_{band}", ", ".join(quality_tags("v6", band).fixed_tokens()))
                for band in range(9, V6_LOWEST_UP - 1, -1)]  # fmt: skip
    ups = [(f"Pony V7 score_{k}_up", f"score_{k}_up") for k in range(8, floor - 1, -1)]
    return [("Pony V7 score_9", "score_9"), *ups]


def styles_csv(scheme: str, floor: int = 1) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "prompt", "negative_prompt"])
    for name, prefix in quality_levels(scheme, floor):
        writer.writerow([name, f"{prefix}, {{prompt}}", ""])
    return out.getvalue()


def prefixes_text(scheme: str, floor: int = 1) -> str:
    return "".join(f"{prefix}, \n" for _, prefix in quality_levels(scheme, floor))


def _tag_control(conn: psycopg2.extensions.connection, set_id: int) -> str:
    with conn.cursor() as cur:
        cur.execute("""SELECT e.run_id, e.spearman, e.results FROM finetune_eval e JOIN finetune_run r USING (run_id)
                       WHERE r.caption_set_id = %s ORDER BY e.eval_id DESC LIMIT 1""", (set_id,))  # fmt: skip
        row = cur.fetchone()
    if row is None:
        return ("Not measured yet for this caption set: fine-tune on this export and run `pony finetune eval` "
                "(it scores images generated with each tag by the aesthetic model).")  # fmt: skip
    run_id, spearman, results = row
    rho = "n/a" if spearman is None else f"{spearman:.3f}"
    lines = [f"Fine-tune run {run_id}: Spearman(tag level, aesthetic score of generated images) = {rho}.", "",
             "| prompt tag | level | images | mean aesthetic score |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| `{r['label']}` | {r['level']} | {r['images']} | {r['mean']:.3f} ± {r['std']:.3f} |" for r in results]
    return "\n".join(lines)


def _table(counts: Counter, heading: str) -> str:
    rows = "\n".join(f"| {key} | {value} |" for key, value in sorted(counts.items(), key=lambda kv: str(kv[0])))
    return f"| {heading} | samples |\n|---|---|\n{rows}"


CAPTION_USE = {
    "kohya": "Each `<sha256>.txt` holds several lines (V7): kohya's `enable_wildcard` picks one per step and its "
    "`shuffle_caption` shuffles the part after `|||` (`dataset.toml` sets both; keep them).",
    "webdataset": "`<sha256>.txt` is one training line, its tags already shuffled and without `|||`: use it as it "
    "is. `<sha256>.json`'s `captions` holds every pre-sampled line in the same form: pick one per "
    "epoch (e.g. `random.choice(sample['json']['captions'])`) to see every draw of the quality tags.",
    "parquet": "`text` is one training line, its tags already shuffled and without `|||`: use it as it is. "
    "`captions` holds every pre-sampled line in the same form: pick one per epoch (e.g. with "
    "`dataset.map(lambda r: {'text': random.choice(r['captions'])})`) to see every draw of the quality "
    "tags.",
    "imagefolder": "`metadata.jsonl`'s `text` is one training line, its tags already shuffled and without `|||`: "
    "use it as it is (`load_dataset('imagefolder', data_dir=…)`). `captions` holds every pre-sampled "
    "line in the same form: pick one per epoch to see every draw of the quality tags.",
}


def _lines_table(lines: LineStats) -> str:
    rows = [f"| {band} | {sum(hist.values())} | {lines.median([band]):g} |"
            for band, hist in sorted(lines.content_per_line.items(), reverse=True)]  # fmt: skip
    return "| band | caption lines | median content tags a line |\n|---|---|---|\n" + "\n".join(rows)


@dataclass
class SampleStats:
    """What the card counts, added up one sample at a time (an export streams its samples, never holding them)."""

    samples: int = 0
    bands: Counter = field(default_factory=Counter)
    ratings: Counter = field(default_factory=Counter)
    sites: Counter = field(default_factory=Counter)

    def add(self, sample: ExportSample) -> None:
        self.samples += 1
        self.bands[sample.band] += 1
        self.ratings[sample.rating] += 1
        self.sites.update({site for site, _ in sample.posts})


def dataset_card(
    conn: psycopg2.extensions.connection, name: str, fmt: str, caption_set: CaptionSetInfo,
    stats: SampleStats, selection: dict, *, lines: LineStats | None = None,
    too_small: tuple[int, int] | None = None,
) -> str:  # fmt: skip
    floor = int(caption_set.parameters.get("floor", 1))
    thresholds = caption_set.parameters.get("thresholds", list(DEFAULT_THRESHOLDS))
    bands, ratings, sites = stats.bands, stats.ratings, stats.sites
    data_files = {"parquet": "data/train-*.parquet", "webdataset": "shard-*.tar"}.get(fmt)
    front = ["---", f"pretty_name: {name}", "task_categories:", "- text-to-image"]
    if data_files:
        front += ["configs:", "- config_name: default", "  data_files:", "  - split: train", f"    path: {data_files}"]
    edges = ", ".join(f"band {9 - i} ≥ {edge:.0%}" for i, edge in enumerate(thresholds))
    levels = "\n".join(f"- `{prefix}` — {style}" for style, prefix in quality_levels(caption_set.scheme, floor))
    scheme_text = (
        "V6: the band tag and the whole `score_K_up` chain in a fixed order, as Pony Diffusion V6 was captioned."
        if caption_set.scheme == "v6" else
        "V7: the band tag `score_B` always, each applicable `score_K_up` independently (half the time each), "
        "shuffled among the content tags, so no fixed string co-occurs. Each sample has several caption lines, each "
        "its own draw of the `score_K_up` tags."
    )  # fmt: skip
    limit = caption_set.token_limit or 75
    kept_text = (
        f"Every caption line fits {limit} CLIP tokens (counted with CLIP's BPE, each tag with its comma). A line "
        "holds its quality tags, source, rating and date tags, then content tags in keep order until the limit: "
        "character, copyright and artist tags (and the style cluster) first, then the other tags from the rarest to "
        "the most common. The budget goes to the `score_K_up` tags a line really carries, so a line that draws "
        "fewer of them holds more content. The protected tags (characters, copyrights, artists, style) are never "
        "left out for a `score_K_up` tag: where a line cannot hold both, it carries fewer `score_K_up` tags"
        + (f" ({lines.thinned} of {lines.lines} lines here)" if lines else "")
        + ". Only a work whose protected "
        "tags alone exceed the limit loses some of them (the last artists first)."
    )
    if lines:
        kept_text += f"\n\n{_lines_table(lines)}"
    small = ""
    if too_small:
        small = (f"\n\n{too_small[0]} images smaller than {too_small[1]} px on a side were left out: kohya gives them "
                 "no bucket (`bucket_no_upscale`) and training would fail on them.")  # fmt: skip
    return "\n".join([
        *front, "---", "", f"# {name}", "",
        f"{stats.samples} samples, one per work (the same picture posted on several sites is one sample), exported as "
        f"**{fmt}** from caption set {caption_set.set_id} (aesthetic model version "
        f"{caption_set.aesthetic_version_id}) by Pony Pipeline. Selection: {selection}.", "",
        "## Quality tags", "", scheme_text, "",
        f"Bands come from the aesthetic model's percentile: {edges}, below that band {9 - len(thresholds)} "
        f"(lowest band {floor}).", "",
        "## Captions", "", kept_text + small, "", CAPTION_USE.get(fmt, ""),
        *(["", f"Train with: `{trainer_command(caption_set.token_limit)} …`"] if fmt == "kohya" else []), "",
        "## How to prompt", "",
        "Most UIs do not add the quality tags: put one of these at the start of the prompt (`styles.csv` has them "
        "as AUTOMATIC1111 styles, `quality-prefixes.txt` as plain lines), then a source and rating tag "
        "(`source_anime`, `source_pony`, `source_furry`, `source_cartoon`; `rating_safe`, `rating_questionable`, "
        "`rating_explicit`), then the content tags:", "", levels, "",
        "## Does each tag control quality?", "", _tag_control(conn, caption_set.set_id), "",
        "## Counts", "", _table(bands, "band"), "", _table(ratings, "rating"), "",
        _table(sites, "site (samples with a post there)"), "",
    ])  # fmt: skip
