"""Mirror tables of API records (issue 30): Parquet with flattened columns (deepghs' danbooru2024 layout) and JSON
Lines (e621 records) stored exactly as a scrape of the same records over the fake API stores them."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pony_tasks.boorus.engine import scrape
from pony_tasks.boorus.imports.records_file import import_records, nest
from pony_tasks.boorus.store import load_cursor
from pony_tasks.db import connect
from pony_tasks.fakes.render import render
from pony_tasks.fakes.server import FakeBooru
from tests.boorus.test_e621_export import COMPARED, counts
from tests.helpers import fast_settings


def stored(settings, site: str) -> dict[int, dict]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(COMPARED)} FROM booru_post WHERE site = %s", (site,))
        return {row[0]: dict(zip(COMPARED, row, strict=True)) for row in cur.fetchall()}


def flatten(record: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict) and prefix == "" and key != "tags":
            flat.update(flatten(value, f"{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def visible_records(server: FakeBooru) -> list[dict]:
    """What the fake API lists (a search's view) as records, in id order."""
    now = server.clock
    return [render(server.site, p, server.corpus.file(p), server.base_url, now) for p in server._searchable()]


@pytest.mark.parametrize("site", ["danbooru", "e621"])
def test_a_records_table_stores_what_a_scrape_of_the_same_records_stores(site, corpus, migrated, tmp_path):
    with FakeBooru(site, corpus) as server:
        settings = fast_settings(migrated, {site: server})
        scrape(site, settings=settings, show_progress=False)
        scraped = stored(settings, site)
        records = visible_records(server)
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE booru_post, booru_score_snapshot, booru_quarantine, booru_cursor CASCADE")
    if site == "danbooru":  # Parquet, nested fields flattened, ids as double where a mirror stores them so
        rows = [flatten(r) for r in records]
        for row in rows:
            row["parent_id"] = float("nan")
        path = tmp_path / "metadata.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=100)
    else:  # JSON Lines: e621 records as the API nests them, one malformed line among them
        path = tmp_path / "posts.jsonl"
        lines = [json.dumps(r) for r in records]
        lines.insert(3, '{"id": 12, "broken')
        path.write_text("\n".join(lines) + "\n")
    report = import_records(site, path, settings=settings, show_progress=False)
    assert stored(settings, site) == scraped
    assert report.quarantined == len(records) - len(scraped) + (site == "e621")
    with connect(settings) as conn:
        cursor = load_cursor(conn, site)
    assert cursor.newest_post_id == max(scraped) and not cursor.backfill_done

    again = import_records(site, path, settings=settings, show_progress=False)
    assert again.already_imported and counts(settings)[0] == len(scraped)


def test_a_killed_records_import_continues(corpus, migrated, tmp_path):
    now = corpus.reference_time
    records = [render("danbooru", p, corpus.file(p), "https://danbooru.donmai.us", now)
               for p in corpus.by_site("danbooru") if not p.broken_record]  # fmt: skip
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    from pony_tasks.boorus.imports import records_file

    records_file.BATCH_ROWS, saved = 100, records_file.BATCH_ROWS
    try:
        first = import_records("danbooru", path, settings=migrated, show_progress=False, stop_after_rows=200)
        second = import_records("danbooru", path, settings=migrated, show_progress=False)
    finally:
        records_file.BATCH_ROWS = saved
    assert first.rows == 200 and second.skipped_rows == 200 and first.rows + second.rows == len(records)
    posts, snapshots, _ = counts(migrated)
    assert posts == snapshots == len(records)


def test_nest_unflattens_columns_and_mends_pandas_numbers() -> None:
    assert nest({"file.url": "u", "score.up": 3.0, "score.down": -1, "parent_id": float("nan"), "id": 7}) == {
        "file": {"url": "u"}, "score": {"up": 3, "down": -1}, "parent_id": None, "id": 7,
    }  # fmt: skip


def test_a_stale_mirror_gets_the_sites_active_aliases(corpus, migrated, tmp_path):
    """A mirror taken before an alias was approved carries the antecedent; stored, it carries the consequent (the
    site's active aliases from its export); retired and pending aliases change nothing."""
    from pony_tasks.boorus.imports import e621_export
    from pony_tasks.fakes.e621_export import write_e621_export

    files = write_e621_export(tmp_path / "export", corpus)
    e621_export.import_relations(files["aliases"], "aliases", settings=migrated, show_progress=False)
    post = next(p for p in corpus.by_site("e621") if not p.broken_record and not p.deleted)
    record = render("e621", post, corpus.file(post), "https://e621.net", corpus.reference_time)
    record["tags"]["general"] = sorted([*record["tags"]["general"], "mlp", "rd"])
    path = tmp_path / "old-mirror.jsonl"
    path.write_text(json.dumps(record) + "\n")
    import_records("e621", path, settings=migrated, show_progress=False)
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT tags, tag_groups FROM booru_post WHERE site = 'e621'")
        tags, groups = cur.fetchone()
    assert "my_little_pony" in tags and "mlp" not in tags and "rd" in tags
    assert "my_little_pony" in groups["general"] and "mlp" not in groups["general"]
