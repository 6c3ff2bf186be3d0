"""The `pony` command line: help everywhere, storage, databases, first run, the library demo."""

import json
import re
from datetime import timedelta
from pathlib import Path

import click
import pytest

from pony_tasks.cli import cli
from tests.helpers import dsn_to_uri, run_pony


def _all_commands(group: click.Group, path: tuple[str, ...] = ()):
    yield path
    context = click.Context(group)
    for name in group.list_commands(context):  # the top-level group loads its commands lazily
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            yield from _all_commands(command, (*path, name))
        else:
            yield (*path, name)


@pytest.mark.parametrize("path", list(_all_commands(cli)), ids=lambda p: " ".join(p) or "pony")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    command = cli
    for name in path:
        command = command.get_command(click.Context(command), name)
    assert command.help, f"`pony {' '.join(path)}` has no help text"


def test_storage_commands_round_trip_a_file(tmp_path: Path) -> None:
    env = {"PONY_HOME": str(tmp_path / "home")}
    source = tmp_path / "in.txt"
    source.write_text("hello pony")
    assert run_pony("storage", "put", "docs/in.txt", str(source), env=env).returncode == 0
    listed = run_pony("storage", "ls", "docs/", env=env)
    assert listed.stdout.split() == ["docs/in.txt"]
    assert run_pony("storage", "get", "docs/in.txt", str(tmp_path / "out.txt"), env=env).returncode == 0
    assert (tmp_path / "out.txt").read_text() == "hello pony"
    refused = run_pony("storage", "put", "../escape.txt", str(source), env=env)
    assert refused.returncode == 3 and "InvalidKeyError" in refused.stderr
    assert run_pony("storage", "rm", "docs/in.txt", env=env).returncode == 0
    assert run_pony("storage", "rm", "docs/in.txt", env=env).returncode == 1


def test_external_database_url_is_used_and_masked(tmp_path: Path, database_url: str) -> None:
    env = {"PONY_HOME": str(tmp_path / "home"), "PONY_DATABASE_URL": dsn_to_uri(database_url, "pw-not-shown")}
    upgraded = run_pony("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "0 pending" in run_pony("db", "status", env=env).stdout
    shown = run_pony("db", "url", env=env)
    assert "pw-not-shown" not in shown.stdout and "********" in shown.stdout
    assert not (tmp_path / "home" / "pgdata").exists(), "an external URL must not start the embedded server"


def test_first_command_migrates_a_fresh_embedded_home_and_an_outdated_external_schema_is_refused(
    tmp_path: Path, database_url: str
) -> None:
    fresh = run_pony("posts", "stats", env={"PONY_HOME": str(tmp_path / "fresh")})
    assert fresh.returncode == 0, fresh.stderr
    assert "applied" in fresh.stderr and "migration(s)" in fresh.stderr and "before first use" in fresh.stderr
    assert "danbooru" in fresh.stdout
    again = run_pony("posts", "stats", env={"PONY_HOME": str(tmp_path / "fresh")})
    assert again.returncode == 0 and "before first use" not in again.stderr
    external = {"PONY_HOME": str(tmp_path / "home"), "PONY_DATABASE_URL": dsn_to_uri(database_url)}
    behind = run_pony("posts", "stats", env=external)
    assert behind.returncode == 3 and "pony db upgrade" in behind.stderr, behind.stderr
    assert "UndefinedTable" not in behind.stderr and "0001" in behind.stderr
    assert run_pony("db", "upgrade", env=external).returncode == 0
    assert run_pony("posts", "stats", env=external).returncode == 0


@pytest.mark.slow
def test_embedded_server_lifecycle_through_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "h"
    env = {"PONY_HOME": str(home)}
    first = run_pony("db", "upgrade", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001" in first.stdout
    assert not (home / "pgdata" / "postmaster.pid").exists(), "server must stop when the last command exits"
    second = run_pony("db", "upgrade", env=env)
    assert "up to date" in second.stdout, "a later command must reuse the same data directory"
    assert run_pony("db", "start", env=env).returncode == 0
    try:
        assert (home / "pgdata" / "postmaster.pid").exists()
        assert "0 pending" in run_pony("db", "status", env=env).stdout
        assert (home / "pgdata" / "postmaster.pid").exists(), "`pony db start` keeps it running"
    finally:
        stopped = run_pony("db", "stop", env=env)
    assert "stopped" in stopped.stdout
    assert not (home / "pgdata" / "postmaster.pid").exists()


@pytest.mark.slow
def test_demo_runs_end_to_end_in_a_fresh_home_and_reruns_idempotently(tmp_path: Path) -> None:
    from pony_tasks.db.migrations import discover
    from pony_tasks.fakes.corpus import SampleCorpus

    env = {"PONY_HOME": str(tmp_path / "home")}
    result = run_pony("demo", env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"migrations: {len(discover())} applied now" in out
    assert "sha256 verified" in out and "recorded as pipeline_run 1" in out
    from pony_tasks.demo import HISTORY_DAYS_BEFORE_REFERENCE

    corpus = SampleCorpus()
    records = [json.loads(line) for line in (tmp_path / "home" / "exports" / "posts.jsonl").read_text().splitlines()]
    stored = {(r["site"], r["post_id"]) for r in records}
    clocks = [corpus.reference_time - timedelta(days=d) for d in HISTORY_DAYS_BEFORE_REFERENCE]
    valid = {(p.site, p.post_id) for p in corpus.posts if not p.broken_record}
    # Every post live at one of the replayed dates was scraped (only Danbooru also shows deleted posts).
    seen_live = {(p.site, p.post_id) for p in corpus.posts if not p.broken_record
                 and any(p.created_at <= c and (p.site == "danbooru" or not p.is_deleted_at(c)) for c in clocks)}
    assert seen_live <= stored <= valid
    for site in ("danbooru", "e621", "derpibooru", "gelbooru"):
        line = next(x for x in out.splitlines() if f"{site} (new+refresh):" in x)
        assert f"— {sum(s == site for s, _ in stored)} new" in line
        assert any(r["deleted"] for r in records if r["site"] == site), f"refresh found deletions on {site}"
    assert "stored" in out and "decompression_bomb" in out and "too_large" in out
    assert "[normalize] run 1:" in out and "KS distance" in out and "provisional predictor on" in out
    ks = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if "KS distance" in line]
    assert ks and max(ks) < 0.05
    assert (tmp_path / "home" / "reports" / "normalize" / "run-1" / "distributions.png").exists()
    assert "[ratings]  rating set 1: 1000 images" in out
    works = re.search(r"planted re-posts found (\d+)/(\d+) \((.*?)\); pair precision ([0-9.]+) .*hard negatives merged "
                      r"(\d+)/(\d+) .*variants (\d+)/(\d+), merged (\d+)", out)  # the matcher scored on the corpus
    found, planted, kinds, precision, merged, negatives, variants, planted_variants, variants_merged = works.groups()
    for kind in kinds.split(", "):  # the issue's ≥ 0.95 by kind (benchmarks/works_matching.py: other seeds too)
        name, fraction = kind.split(" ")
        kind_found, kind_planted = map(int, fraction.split("/"))
        assert kind_found >= 0.95 * kind_planted, kind
    # issue 15: precision ≥ 0.99 and no look-alike merged (the demo: 1.000, 0 of 28)
    assert float(precision) >= 0.99 and int(merged) == 0 and 0 < int(negatives) and int(variants_merged) == 0
    assert int(variants) >= 0.8 * int(planted_variants)  # 11 of 12: the rest judged distinct (not merged either)
    images = int(re.search(r"\[images\]   images: \d+ to fetch, (\d+) stored", out).group(1))
    assert images > 1800, "the corpus's good files are stored"
    assert f"{images} embedded" in out and "SYNTHETIC ratings" in out
    imported = int(re.search(r"imported (\d+) ratings", out).group(1))
    assert 2000 < imported < 2200, "two raters on 1,000 images, ~3 % of them again (test–retest)"
    assert "[aesthetic] version 1 (MLP, LAION layout) on SYNTHETIC ratings" in out and "Spearman" in out
    assert "promoted to active" in out and f"{images} images scored" in out
    works_count = int(re.search(r"\[works\]    works: \d+ images in (\d+) works", out).group(1))
    assert works_count < images, "the corpus's re-posts share works"
    assert f"[captions] caption set 1 (scheme v7) active: {works_count} captions" in out and "|||" in out
    assert "as kohya to exports/demo-kohya/" in out
    entries = re.search(r"one entry per work: rating set (\d+) entries from (\d+) works; captions (\d+) entries from "
                        r"(\d+) works; export (\d+) samples from (\d+) works", out)
    counts = list(map(int, entries.groups()))
    assert counts[0] == counts[1] == 1000 and counts[2] == counts[3] == works_count and counts[4] == counts[5] > 0
    assert (tmp_path / "home" / "objects" / "exports" / "demo-kohya" / "manifest.json").exists()

    again = run_pony("demo", env=env, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "0 applied now" in again.stdout
    assert again.stdout.count(" 0 new,") == 4 and "[normalize] run 2:" in again.stdout
    assert "0 images to embed" in again.stdout and f"0 images scored, {images} already were" in again.stdout
    assert "[aesthetic] version 1 " in again.stdout, "same ratings, same settings: the same version"
    assert "caption set 1 already matches the active aesthetic version" in again.stdout
    assert "images: 0 to fetch" in again.stdout
    assert (tmp_path / "home" / "exports" / "posts.jsonl").read_text().splitlines().__len__() == len(stored)


def test_a_scrape_command_does_not_import_the_model_stack() -> None:
    """Every Airflow stage is a `pony` process: the scrape and fetch commands must not load torch, scipy or GX."""
    import subprocess
    import sys

    code = ("import sys; from pony_tasks.cli import cli; cli.get_command(None, 'scrape'); "
            "cli.get_command(None, 'images'); print(sorted(m for m in ('torch', 'scipy', 'great_expectations', "
            "'open_clip', 'pandas') if m in sys.modules))")  # fmt: skip
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_airflow_env_prints_every_variable_make_airflow_sets(tmp_path: Path, database_url: str) -> None:
    import shlex

    env = {"PONY_HOME": str(tmp_path / "home"), "PONY_DATABASE_URL": dsn_to_uri(database_url),
           "PONY_AIRFLOW_USERS": "ana:admin,bob:user"}  # fmt: skip
    printed = run_pony("airflow", "env", "--fakes", env=env)
    assert printed.returncode == 0, printed.stderr
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in printed.stdout.splitlines())
    urls = json.loads(exported["PONY_BOORU_BASE_URLS"])
    assert urls == {s: f"http://127.0.0.1:{p}" for s, p in zip(("danbooru", "derpibooru", "e621", "gelbooru"),
                                                                range(18101, 18105), strict=True)}  # fmt: skip
    assert json.loads(exported["PONY_BOORU_CREDENTIALS"]) == {"gelbooru": "1234:fake-gelbooru-api-key"}
    assert json.loads(exported["PONY_BOORU_FILE_BASE_URLS"]) == {"e621": "http://127.0.0.1:18103"}
    assert {"PONY_SCRAPE_CONTACT", "PONY_BOORU_RATE_LIMITS", "PONY_IMAGE_HOST_RATE_LIMIT", "PONY_IMAGE_MAX_BYTES",
            "PONY_EMBED_MODEL", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"} <= set(exported)  # fmt: skip
    assert Path(exported["PONY_EMBED_PRETRAINED"]).is_file()  # the tiny model's weights, written once
    assert exported["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "ana:admin,bob:user"
    assert exported["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    # make airflow's script sets nothing of its own beyond PATH and PONY_HOME: `pony airflow env` is the whole list
    script = (Path(__file__).parents[1] / "scripts" / "airflow-standalone").read_text()
    assert set(re.findall(r"^\s*export (\w+)=", script, re.M)) == {"PATH", "PONY_HOME"}
    real = run_pony("airflow", "env", env={k: v for k, v in env.items() if k != "PONY_AIRFLOW_USERS"})
    assert "PONY_BOORU_BASE_URLS" not in real.stdout and "SIMPLE_AUTH_MANAGER_ALL_ADMINS=True" in real.stdout
