"""`pony plan`: a first run's requests, hours, bytes and GPU hours from the sites' sizes and the settings."""

from __future__ import annotations

import json

import pytest

from pony_tasks.fakes.server import FakeBooru
from pony_tasks.plan import make_plan
from tests.helpers import fast_settings


def test_the_plan_follows_the_sites_sizes_and_the_settings(settings) -> None:
    posts = {"danbooru": 9_000_000, "gelbooru": 11_000_000, "e621": 5_000_000, "derpibooru": 3_500_000}
    plan = make_plan(settings, posts=posts, gpu_images_per_second=500.0)
    by_site = {s.site: s for s in plan.sites}
    assert by_site["danbooru"].metadata_requests == 45_000  # 200 a page
    assert by_site["gelbooru"].metadata_hours == pytest.approx(110_000 / 2.0 / 3600)  # 100 a page at 2/s
    assert by_site["gelbooru"].sweep_requests_per_day == 3_667  # 11M within 30 days
    assert plan.images == sum(s.images for s in plan.sites) and 27_000_000 < plan.images < 28_500_000
    assert plan.gpu_hours == pytest.approx(plan.images / 500.0 / 3600)
    assert plan.embedding_gib == pytest.approx(plan.images * 768 * 2 / 2**30)  # ViT-L-14 in fp16: ~40 GiB
    faster = make_plan(settings.replace(image_host_rate_limit=20.0), posts=posts)
    assert faster.sites[0].fetch_days == pytest.approx(plan.sites[0].fetch_days / 2)
    assert any("not measured" in a for a in plan.assumptions), "the unmeasured GPU speed says so"


def test_live_sizes_come_from_each_sites_newest_post(corpus, migrated) -> None:
    with FakeBooru("danbooru", corpus) as danbooru:
        plan = make_plan(fast_settings(migrated, {"danbooru": danbooru}), sites=["danbooru"], live=True)
        requests = len(danbooru.api_requests())
    (site,) = plan.sites
    assert site.posts == max(p.post_id for p in corpus.by_site("danbooru") if not p.deleted)
    assert site.size_from.startswith("live") and requests == 1


def test_pony_plan_prints_the_table_and_json(settings, tmp_path) -> None:
    from click.testing import CliRunner

    from pony_tasks.cli import cli

    runner = CliRunner(env={"PONY_HOME": str(settings.home)})
    table = runner.invoke(cli, ["plan", "--posts", "e621=5_000_000", "--site", "e621"])
    assert table.exit_code == 0, table.output
    assert "e621" in table.output and "GPU hours" in table.output and "assumptions:" in table.output
    data = json.loads(runner.invoke(cli, ["plan", "--json", "--posts", "e621=1000", "--site", "e621"]).output)
    assert data["sites"][0]["posts"] == 1000 and data["sites"][0]["metadata_requests"] == 4
    refused = runner.invoke(cli, ["plan", "--posts", "e62=5"])
    assert refused.exit_code != 0 and "SITE=POSTS" in refused.output
