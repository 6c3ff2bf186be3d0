"""Sites as data (issue 30): a second instance of every engine, added by configuration only, is scraped, fetched,
normalised in its own cohorts, captioned with its row's source tag and gets a scrape DAG."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pony_tasks.boorus.engine import scrape
from pony_tasks.captions.render import BUILT_IN_SITE_SOURCES, source_tag, use_site_sources
from pony_tasks.config import ConfigError, load_settings
from pony_tasks.db import connect
from pony_tasks.fakes.local_sites import FAKE_CREDENTIALS
from pony_tasks.fakes.server import FakeBooru
from tests.helpers import PROJECT_ROOT, fast_settings

# (engine, the fake of that engine, a second instance's name, its row's extras)
INSTANCES = [
    ("philomena", "derpibooru", "furbooru", {"source": "source_furry", "filter_id": "56027"}),
    ("e621", "e621", "e926", {}),
    ("danbooru", "danbooru", "safebooru_donmai", {}),
    ("gelbooru", "gelbooru", "safebooru", {}),
]
COLUMNS = ("post_id", "created_at", "rating", "tags", "tag_groups", "score", "up_votes", "down_votes", "favorites",
           "md5", "width", "height", "file_ext", "sources", "deleted")  # fmt: skip


def rows(settings, site: str) -> list[tuple]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(COLUMNS)} FROM booru_post WHERE site = %s ORDER BY post_id", (site,))
        return cur.fetchall()


@pytest.mark.parametrize(("engine", "fake_site", "name", "extra"), INSTANCES, ids=[i[2] for i in INSTANCES])
def test_a_second_instance_of_every_engine_by_configuration(engine, fake_site, name, extra, corpus, migrated):
    with FakeBooru(fake_site, corpus) as server:
        row = {"engine": engine, "base_url": server.base_url, "hosts": ["example.invalid"], **extra}
        overrides = {"sites": {name: row}}
        if fake_site in FAKE_CREDENTIALS:
            overrides["booru_credentials"] = {fake_site: FAKE_CREDENTIALS[fake_site], name: FAKE_CREDENTIALS[fake_site]}
        if engine == "e621":
            overrides["booru_file_base_urls"] = {fake_site: server.base_url, name: server.base_url}
        settings = fast_settings(migrated, {fake_site: server}, **overrides)
        settings = settings.replace(booru_rate_limits={**settings.booru_rate_limits, name: 1.9 if engine == "e621"
                                                       else 40.0})  # fmt: skip
        scrape(fake_site, settings=settings, show_progress=False)
        report = scrape(name, settings=settings, show_progress=False)
        if engine == "philomena":  # images, normalisation and captions of the new site, too
            from pony_tasks.images.fetch import fetch_images
            from pony_tasks.normalize.run import normalize

            fetched = fetch_images(settings=settings, site=name, show_progress=False)
            result = normalize(settings, as_of=corpus.reference_time)
    # The same posts as the engine's built-in site stores from the same server, under the new name.
    assert report.inserted > 0 and rows(settings, name) == rows(settings, fake_site)
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT site, count(*) FROM booru_score_snapshot GROUP BY site")
        snapshots = dict(cur.fetchall())
    assert snapshots[name] == snapshots[fake_site]
    if engine == "philomena":
        assert fetched.stored + fetched.deduplicated + fetched.linked_by_hash > 0
        with connect(settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM booru_post_image WHERE site = %s", (name,))
            assert cur.fetchone()[0] > 0
            cur.execute("SELECT DISTINCT site, cohort FROM normalized_score WHERE run_id = %s", (result.run_id,))
            cohorts = cur.fetchall()
        assert {c for s, c in cohorts if s == name}, "the new site has cohorts of its own"
        assert settings.normalize_metrics[name] == "wilson_score"  # the engine's metric


def test_the_caption_source_tag_comes_from_the_site_row() -> None:
    settings = load_settings(sites={"furbooru": {"engine": "philomena", "base_url": "https://furbooru.org",
                                                 "source": "source_furry"}})  # fmt: skip
    try:
        key = use_site_sources({site: row.source for site, row in settings.sites.items()})
        assert key.startswith(";sources=")  # cached caption content depends on it
        assert source_tag("furbooru", ["solo"]) == "source_furry"
        assert source_tag("furbooru", ["my_little_pony"]) == "source_pony"  # a tag's pony still wins
        assert source_tag("derpibooru", ["wolf"]) == "source_pony" and source_tag("danbooru", ["1girl"]) == (
            "source_anime")  # fmt: skip
    finally:
        assert use_site_sources(BUILT_IN_SITE_SOURCES) == ""


def test_bad_site_rows_are_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigError, match="unknown site.*add one as \\[sites.NAME\\]"):
        load_settings(booru_rate_limits={"furbooru": 1.0})
    with pytest.raises(ConfigError, match="engine"):
        load_settings(sites={"furbooru": {"engine": "moebooru", "base_url": "https://furbooru.org"}})
    with pytest.raises(ConfigError, match="site name"):
        load_settings(sites={"Fur Booru": {"engine": "philomena", "base_url": "https://furbooru.org"}})
    with pytest.raises(ConfigError, match='safebooru needs "user_id:api_key"'):
        load_settings(sites={"safebooru": {"engine": "gelbooru", "base_url": "https://safebooru.org"}},
                      booru_credentials={"safebooru": "not-a-pair"})  # fmt: skip


def test_a_configured_site_gets_its_scrape_refresh_and_gate_tasks(tmp_path) -> None:
    """Parsed as Airflow parses the DAG folder, with the site added in pony.toml."""
    config = tmp_path / "pony.toml"
    config.write_text('[sites.furbooru]\nengine = "philomena"\nbase_url = "https://furbooru.org"\n'
                      'hosts = ["furbooru.org"]\nsource = "source_furry"\n')  # fmt: skip
    code = ("from airflow.dag_processing.dagbag import DagBag; import json; "
            "bag = DagBag(dag_folder='dags'); "
            "print(json.dumps({'errors': {k: str(v)[:300] for k, v in bag.import_errors.items()}, "
            "'dags': sorted(bag.dag_ids), "
            "'refresh': sorted(t.task_id for t in bag.dags['booru_score_refresh'].tasks), "
            "'scrape': sorted(t.task_id for t in bag.dags['booru_scrape'].tasks)}))")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PONY_")}
    env.update(PONY_CONFIG=str(config), PONY_HOME=str(tmp_path / "home"), PYTHONPATH="plugins",
               AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert not parsed["errors"], parsed["errors"]
    assert {"scrape_furbooru", "check_furbooru"} <= set(parsed["scrape"])
    assert {"refresh_furbooru", "check_furbooru"} <= set(parsed["refresh"])
