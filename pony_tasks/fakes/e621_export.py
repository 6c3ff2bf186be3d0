"""e621's database export of the sample corpus, written as e621ng writes it (``COPY … TO STDOUT WITH CSV HEADER``,
gzipped): ``posts``, ``tags``, ``tag_aliases``, ``tag_implications``.

Two layouts of the posts file: ``classic`` (the 29 long-standing columns, dated names ``posts-YYYY-MM-DD.csv.gz``)
and ``app`` (e621ng's in-app export since 2026-06: three more columns, undated ``posts.csv.gz``). The values are the
fake API's for the same posts at the same clock (``fakes.render``), so an import can be compared with a scrape.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pony_tasks.fakes.corpus import CorpusPost, SampleCorpus
from pony_tasks.fakes.render import render

POSTS_HEADER = (
    "id", "uploader_id", "created_at", "md5", "source", "rating", "image_width", "image_height", "tag_string",
    "locked_tags", "fav_count", "file_ext", "parent_id", "change_seq", "approver_id", "file_size", "comment_count",
    "description", "duration", "updated_at", "is_deleted", "is_pending", "is_flagged", "score", "up_score",
    "down_score", "is_rating_locked", "is_status_locked", "is_note_locked",
)  # fmt: skip
APP_EXTRA = ("bg_color", "last_noted_at", "last_commented_at")
TAGS_HEADER = ("id", "name", "category", "post_count")
APP_TAGS_EXTRA = ("created_at", "updated_at", "is_locked")
RELATIONS_HEADER = ("id", "antecedent_name", "consequent_name", "created_at", "status")
GROUP_CATEGORY = {"general": 0, "artist": 1, "contributor": 2, "copyright": 3, "character": 4, "species": 5,
                  "invalid": 6, "meta": 7, "lore": 8}  # fmt: skip
# A few relations as e621 lists them: active, retired and pending aliases, and implications.
ALIASES = (
    (1, "mlp", "my_little_pony", "active"), (2, "twilight", "twilight_sparkle_(mlp)", "active"),
    (3, "rd", "rainbow_dash_(mlp)", "deleted"), (4, "dashie", "rainbow_dash_(mlp)", "pending"),
)  # fmt: skip
IMPLICATIONS = ((1, "twilight_sparkle_(mlp)", "my_little_pony", "active"), (2, "wolf", "canine", "active"))


def timestamp(value: datetime) -> str:
    """How PostgreSQL writes a ``timestamp without time zone`` in UTC."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def tag_id(name: str) -> int:
    return int(hashlib.md5(f"e621:{name}".encode()).hexdigest()[:8], 16) + 1


def post_row(post: CorpusPost, record: dict[str, Any], layout: str) -> list[str]:
    """One posts-file row from the fake API's record of the post."""
    score, file, flags = record["score"], record["file"], record["flags"]
    if not isinstance(score, dict):  # the corpus's broken record: the export has a value the importer refuses
        score = {"up": "n/a", "down": 0, "total": score}
    sources = list(record["sources"])  # several in one field, one per line
    description = "" if post.post_id % 3 else f'Commission for "{post.artist}", part {post.post_id % 7}\nthanks!'
    tags = sorted({t for names in record["tags"].values() for t in names})
    row = [
        str(post.post_id), "1", timestamp(post.created_at), file["md5"], "\n".join(sources), record["rating"],
        str(file["width"]), str(file["height"]), " ".join(tags), "", str(record["fav_count"]), file["ext"], "",
        str(record["change_seq"]), "", str(file["size"]), "0", description, "", timestamp(post.created_at),
        "t" if flags["deleted"] else "f", "f", "f", str(score["total"]), str(score["up"]), str(score["down"]),
        "f", "f", "f",
    ]  # fmt: skip
    if layout == "app":
        row += ["", "", ""]
    return row


def _write(path: Path, header: tuple[str, ...], rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(gzip.compress(buffer.getvalue().encode(), mtime=0))
    return path


def write_e621_export(
    directory: Path, corpus: SampleCorpus | None = None, now: datetime | None = None, *, layout: str = "classic",
    base_url: str = "https://e621.net", malformed_row: bool = False,
) -> dict[str, Path]:  # fmt: skip
    """The export files of the corpus's e621 posts as of ``now`` (default: the corpus's reference time); returns
    {kind: path}. ``malformed_row`` adds a row with too few fields after the first post."""
    if layout not in ("classic", "app"):
        raise ValueError(f"layout must be classic or app, got {layout!r}")
    corpus = corpus or SampleCorpus()
    now = now or corpus.reference_time
    directory.mkdir(parents=True, exist_ok=True)
    suffix = f"-{now:%Y-%m-%d}.csv.gz" if layout == "classic" else ".csv.gz"
    posts = sorted((p for p in corpus.by_site("e621") if p.created_at <= now), key=lambda p: p.post_id)
    rows, categories = [], {}
    for post in posts:
        record = render("e621", post, corpus.file(post), base_url, now)
        rows.append(post_row(post, record, layout))
        for group, names in record["tags"].items():
            for name in names:
                categories[name] = GROUP_CATEGORY[group]
    if malformed_row and rows:
        rows.insert(1, rows[0][:5])
    header = POSTS_HEADER + (APP_EXTRA if layout == "app" else ())
    files = {"posts": _write(directory / f"posts{suffix}", header, rows)}
    tag_header = TAGS_HEADER + (APP_TAGS_EXTRA if layout == "app" else ())
    tag_rows = []
    for name, category in sorted(categories.items()):
        row = [str(tag_id(name)), name, str(category), "1"]
        tag_rows.append(row + (["2020-01-01 00:00:00", "2020-01-01 00:00:00", "f"] if layout == "app" else []))
    files["tags"] = _write(directory / f"tags{suffix}", tag_header, tag_rows)
    for kind, relations, name in (("aliases", ALIASES, "tag_aliases"), ("implications", IMPLICATIONS,
                                                                        "tag_implications")):  # fmt: skip
        relation_rows = [[str(i), a, c, "2020-01-01 00:00:00", s] for i, a, c, s in relations]
        files[kind] = _write(directory / f"{name}{suffix}", RELATIONS_HEADER, relation_rows)
    return files
