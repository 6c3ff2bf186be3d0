"""Real API pages recorded from the live sites (tests/fixtures/real-api-samples, each with the repository it came
from) scraped through the real `pony scrape` against a server on 127.0.0.1 replaying them, exported with
`pony posts export`, and checked field by field against values read here from the raw JSON."""

from __future__ import annotations

import copy
import html
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pony_tasks.boorus.export import export_jsonl
from pony_tasks.db import connect
from pony_tasks.fakes.replay import ReplayBooru, load_recorded
from tests.helpers import PROJECT_ROOT, run_pony

SAMPLES = PROJECT_ROOT / "tests" / "fixtures" / "real-api-samples"
PAGES = sorted(SAMPLES.glob("*/*.json"))


def _utc_z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def expected(site: str, raw: dict) -> dict:
    """What the export must say about a raw record, read from the raw JSON by this test's own rules."""
    if site == "danbooru":
        return {"md5": raw["md5"], "score": raw["score"], "favorites": raw["fav_count"],
                "tags": len(set(raw["tag_string"].split())), "file_url": raw["file_url"], "derived": False,
                "created_at": _utc_z(datetime.fromisoformat(raw["created_at"]))}  # fmt: skip
    if site == "e621":
        file = raw["file"]
        tags = {t for names in raw["tags"].values() for t in names}
        url = file["url"] or f"https://static1.e621.net/data/{file['md5'][:2]}/{file['md5'][2:4]}/{file['md5']}.{file['ext']}"
        return {"md5": file["md5"], "score": raw["score"]["total"], "favorites": raw["fav_count"], "tags": len(tags),
                "file_url": url, "derived": file["url"] is None,
                "created_at": _utc_z(datetime.fromisoformat(raw["created_at"]))}  # fmt: skip
    if site == "derpibooru":
        created = raw["created_at"] if raw["created_at"].endswith("Z") else raw["created_at"] + "+00:00"
        return {"sha512": raw["sha512_hash"], "score": raw["score"], "favorites": raw["faves"],
                "tags": len(set(raw["tags"])), "file_url": raw["representations"]["full"], "derived": False,
                "created_at": _utc_z(datetime.fromisoformat(created.replace("Z", "+00:00")))}  # fmt: skip
    created = datetime.strptime(raw["created_at"], "%a %b %d %H:%M:%S %z %Y")
    return {"md5": raw["md5"], "score": raw["score"], "favorites": None,
            "tags": len(set(html.unescape(raw["tags"]).split())), "file_url": raw["file_url"], "derived": False,
            "created_at": _utc_z(created)}  # fmt: skip


def _scrape_and_export(site: str, records: list[dict], settings, tmp_path: Path) -> dict[int, dict]:
    env = {
        "PONY_DATABASE_URL": settings.database_url.get_secret_value(),
        "PONY_HOME": str(settings.home),
        "PONY_SCRAPE_CONTACT": "pony-tests on e621",
        "PONY_BOORU_CREDENTIALS": json.dumps({"gelbooru": "1234:replay-key"}),
        "PONY_BOORU_RATE_LIMITS": json.dumps({site: 1.9 if site == "e621" else 20}),
    }
    with ReplayBooru(site, records) as server:
        scraped = run_pony("scrape", site, "--base-url", server.base_url, env=env)
        assert scraped.returncode == 0, scraped.stderr
    output = io.StringIO()  # what `pony posts export` writes (the CLI runs this function; tested in test_cli)
    with connect(settings) as conn:
        export_jsonl(conn, output, site)
    return {r["post_id"]: r for r in map(json.loads, output.getvalue().splitlines())}


@pytest.mark.parametrize("page", PAGES, ids=[f"{p.parent.name}/{p.stem}" for p in PAGES])
def test_recorded_page_scrapes_field_by_field(page: Path, migrated, tmp_path) -> None:
    site = page.parent.name
    records = load_recorded(page)
    assert records and (page.with_suffix(".source.txt")).is_file(), "every recorded page names its source"
    exported = _scrape_and_export(site, records, migrated, tmp_path)
    assert set(exported) == {int(r["id"]) for r in records}, "every recorded post is stored, none quarantined"
    for raw in records:
        got, want = exported[int(raw["id"])], expected(site, raw)
        hash_field = "sha512" if site == "derpibooru" else "md5"
        assert got[hash_field] == want[hash_field]
        assert (got["score"], got["favorites"]) == (want["score"], want["favorites"])
        assert len(got["tags"]) == want["tags"]
        assert (got["file_url"], got["file_url_derived"]) == (want["file_url"], want["derived"])
        assert got["created_at"] == want["created_at"] and got["deleted"] is False


def test_e621_post_with_a_hidden_file_url_gets_the_url_the_site_would_have_given(migrated, tmp_path) -> None:
    """e621 hides file.url from anonymous callers for some posts (md5 and ext still sent): a recorded page with the
    URL removed the way the site removes it must give back exactly the URL it had."""
    records = load_recorded(SAMPLES / "e621" / "imgbrd_results.json")
    hidden = copy.deepcopy(records)
    originals = {}
    for raw in hidden[::7]:
        originals[raw["id"]] = raw["file"]["url"]
        raw["file"]["url"] = raw["preview"]["url"] = raw["sample"]["url"] = None
    exported = _scrape_and_export("e621", hidden, migrated, tmp_path)
    assert originals and all(url for url in originals.values())
    for post_id, url in originals.items():
        assert exported[post_id]["file_url"] == url and exported[post_id]["file_url_derived"] is True
    assert sum(r["file_url_derived"] for r in exported.values()) == len(originals)


def test_derpibooru_recorded_timestamps_without_zone_are_utc() -> None:
    raw = load_recorded(SAMPLES / "derpibooru" / "imgbrd_results.json")[0]
    assert not raw["created_at"].endswith("Z") and "+" not in raw["created_at"], "the 2020 page has no zone"
