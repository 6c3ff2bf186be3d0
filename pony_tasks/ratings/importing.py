"""``pony ratings import``: human 1–5 ratings from CSV or JSONL, all-or-nothing unless told to skip bad rows.

Each row names the image by ``sha256``, or by ``site`` and ``post_id``; gives ``rating`` (an integer 1–5), ``rater``
and ``timestamp`` (ISO 8601; without a time zone it is taken as UTC). Every invalid row is reported by its line
number and reason. Importing the same file twice adds nothing (a rating is unique per image, rater and time).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2.extensions

from pony_tasks.boorus.sites import SITE_NAME
from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.db.bulk import copy_rows

SHA256 = re.compile(r"^[0-9a-f]{64}$")


class RatingsFileError(ValueError):
    """The file cannot be read as CSV or JSONL at all."""


@dataclass(frozen=True)
class ValidRating:
    line: int
    sha256: str
    rating: int
    rater: str
    rated_at: datetime


@dataclass
class ImportResult:
    rows: int
    imported: int = 0
    already_present: int = 0
    problems: list[str] = field(default_factory=list)
    refused: bool = False  # invalid rows and no --skip-invalid: nothing imported

    def summary(self) -> str:
        if self.refused:
            return (
                f"nothing imported: {len(self.problems)} of {self.rows} rows are invalid "
                "(fix them, or pass --skip-invalid to import the valid ones):\n  " + "\n  ".join(self.problems)
            )
        text = f"imported {self.imported} ratings ({self.already_present} were already present) from {self.rows} rows"
        if self.problems:
            text += f"; skipped {len(self.problems)} invalid rows:\n  " + "\n  ".join(self.problems)
        return text


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, fields) for each data row of a .csv or .jsonl/.json-lines file."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames:
            raise RatingsFileError(
                f"{path}: no header row; expected columns sha256 or site,post_id, rating, rater, timestamp"
            )
        return [(number, dict(row)) for number, row in enumerate(reader, start=2)]
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                rows.append((number, {"__error__": f"not valid JSON ({exc.msg})"}))
                continue
            rows.append((number, value if isinstance(value, dict) else {"__error__": "not a JSON object"}))
        return rows
    raise RatingsFileError(f"{path}: use a .csv or .jsonl file")


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("timestamp is missing")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"timestamp {value!r} is not ISO 8601 (e.g. 2026-11-25T14:03:00Z)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _parse_rating(value: Any) -> int:
    text = str(value).strip() if value is not None else ""
    if not re.fullmatch(r"[0-9]+", text):
        raise ValueError(f"rating {value!r} is not a whole number from 1 to 5")
    number = int(text)
    if not 1 <= number <= 5:
        raise ValueError(f"rating {number} is outside 1–5")
    return number


def validate_rows(
    conn: psycopg2.extensions.connection, rows: list[tuple[int, dict[str, Any]]]
) -> tuple[list[ValidRating], list[str]]:
    # Only the images and posts the file names are looked up (one query each), never every stored image: at the
    # real size that would be tens of millions of rows for a file of a few thousand ratings.
    shas = sorted({str(f.get("sha256") or "").strip().lower() for _, f in rows} - {""})
    posts = sorted({(str(f.get("site") or "").strip(), int(str(f.get("post_id")).strip())) for _, f in rows
                    if str(f.get("post_id") or "").strip().isdigit() and int(str(f.get("post_id")).strip()) < 2**63})
    with conn.cursor() as cur:
        cur.execute("SELECT sha256 FROM image WHERE sha256 = ANY(%s::text[])", (shas,))
        known = {row[0] for row in cur.fetchall()}
        cur.execute("""SELECT i.site, i.post_id, i.sha256 FROM booru_post_image i
                       JOIN unnest(%s::text[], %s::bigint[]) AS q(site, post_id)
                         ON q.site = i.site AND q.post_id = i.post_id""",
                    ([site for site, _ in posts], [post_id for _, post_id in posts]))  # fmt: skip
        by_post = {(site, post_id): sha for site, post_id, sha in cur.fetchall()}
    valid, problems = [], []
    for line, fields in rows:
        try:
            if "__error__" in fields:
                raise ValueError(fields["__error__"])
            sha = str(fields.get("sha256") or "").strip().lower()
            if sha:
                if not SHA256.match(sha):
                    raise ValueError(f"sha256 {sha[:20]!r} is not 64 hex digits")
                if sha not in known:
                    raise ValueError(f"unknown image sha256 {sha[:12]}…")
            else:
                site, post_id = str(fields.get("site") or "").strip(), str(fields.get("post_id") or "").strip()
                if not site or not post_id:
                    raise ValueError("no image: give sha256, or site and post_id")
                if not SITE_NAME.fullmatch(site) or not post_id.isdigit():
                    raise ValueError(f"site {site!r} / post_id {post_id!r} do not name a post")
                sha = by_post.get((site, int(post_id)))
                if sha is None:
                    raise ValueError(f"unknown image: {site} post {post_id} has no stored image")
            rating = _parse_rating(fields.get("rating"))
            rater = str(fields.get("rater") or "").strip()
            if not rater:
                raise ValueError("rater is missing")
            rated_at = _parse_time(fields.get("timestamp", fields.get("rated_at")))
            if rated_at > datetime.now(UTC):
                raise ValueError(f"timestamp {rated_at.isoformat()} is in the future")
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        valid.append(ValidRating(line, sha, rating, rater, rated_at))
    return valid, problems


def import_ratings(
    path: Path, *, settings: Settings | None = None, skip_invalid: bool = False, source: str | None = None
) -> ImportResult:
    settings = settings or get_settings()
    rows = read_rows(path)
    with connect(settings) as conn:
        valid, problems = validate_rows(conn, rows)
        result = ImportResult(rows=len(rows), problems=problems)
        if problems and not skip_invalid:
            result.refused = True
            return result
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE incoming_rating ON COMMIT DROP AS "
                "SELECT sha256, rating, rater, rated_at, source FROM human_rating WITH NO DATA"
            )
            copy_rows(
                cur,
                "incoming_rating",
                ("sha256", "rating", "rater", "rated_at", "source"),
                [(v.sha256, v.rating, v.rater, v.rated_at, source or path.name) for v in valid],
            )
            cur.execute(
                """INSERT INTO human_rating (sha256, rating, rater, rated_at, source)
                   SELECT sha256, rating, rater, rated_at, source FROM incoming_rating
                   ON CONFLICT (sha256, rater, rated_at) DO NOTHING"""
            )
            result.imported = cur.rowcount
        result.already_present = len(valid) - result.imported
    return result


def export_ratings(conn: psycopg2.extensions.connection, out, fmt: str = "csv") -> int:
    """Every rating with one post that shows the image, oldest first."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT r.sha256, p.site, p.post_id, r.rating, r.rater, r.rated_at
               FROM human_rating r
               LEFT JOIN LATERAL (SELECT site, post_id FROM booru_post_image i WHERE i.sha256 = r.sha256
                                  ORDER BY site, post_id LIMIT 1) p ON true
               ORDER BY r.rated_at, r.rating_id"""
        )
        rows = cur.fetchall()
    columns = ("sha256", "site", "post_id", "rating", "rater", "timestamp")
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([*row[:5], row[5].astimezone(UTC).isoformat().replace("+00:00", "Z")])
    else:
        for row in rows:
            record = dict(zip(columns, row, strict=True))
            record["timestamp"] = row[5].astimezone(UTC).isoformat().replace("+00:00", "Z")
            out.write(json.dumps(record) + "\n")
    return len(rows)
