"""Normalisation on controlled data in a real PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scipy.stats import kstest

from pony_tasks.boorus.records import UnifiedPost
from pony_tasks.boorus.store import append_snapshots, upsert_posts
from pony_tasks.db import connect
from pony_tasks.normalize.evaluate import evaluate_provisional
from pony_tasks.normalize.report import build_report
from pony_tasks.normalize.run import latest_run_id, normalize

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def _post(site: str, post_id: int, created_at, rating="general", favorites=None, score=0, up=None, down=None,
          deleted=False) -> UnifiedPost:  # fmt: skip
    return UnifiedPost(
        site=site, post_id=post_id, created_at=created_at, rating=rating, site_rating=rating, tags=["x"],
        score=score, up_votes=up, down_votes=down, favorites=favorites, file_url=None, md5=None, sha512=None,
        width=1, height=1, file_ext="png", sources=[], deleted=deleted,
    )  # fmt: skip


def _store(settings, posts: list[UnifiedPost], observed_at=AS_OF) -> None:
    with connect(settings) as conn:
        upsert_posts(conn, posts)
        append_snapshots(conn, posts, observed_at)


def _scores(settings, run_id: int) -> dict[tuple[str, int], tuple[float, bool]]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT site, post_id, normalized_score, provisional FROM normalized_score WHERE run_id = %s",
                    (run_id,))  # fmt: skip
        return {(s, p): (v, prov) for s, p, v, prov in cur.fetchall()}


def test_scores_are_uniform_per_group_and_equal_across_sites_at_equal_percentiles(migrated) -> None:
    rng = random.Random(5)
    posts = []
    for index in range(600):
        created = AS_OF - timedelta(days=40 + index * 3)
        raw = rng.randint(0, 400)
        posts.append(_post("danbooru", index + 1, created, favorites=raw))
        posts.append(_post("e621", index + 1, created, favorites=raw * 10 + 5))  # another scale, same order
        posts.append(_post("gelbooru", index + 1, created, score=rng.randint(-3, 4)))  # heavy ties, negatives
    _store(migrated, posts)
    result = normalize(migrated, as_of=AS_OF)
    scores = _scores(migrated, result.run_id)
    assert result.matured == 1800 and result.provisional == 0
    for site in ("danbooru", "e621", "gelbooru"):
        values = [v for (s, _), (v, _) in scores.items() if s == site]
        assert kstest(values, "uniform").statistic < 0.05, site
        assert all(0 < v < 1 for v in values)
    for index in range(1, 601):
        assert scores[("danbooru", index)][0] == pytest.approx(scores[("e621", index)][0]), index


def test_young_posts_get_provisional_scores_in_metric_order(migrated) -> None:
    rng = random.Random(3)
    old = [_post("danbooru", i, AS_OF - timedelta(days=60 + i), favorites=rng.randint(0, 400)) for i in range(1, 301)]
    young = [_post("danbooru", 1000 + i, AS_OF - timedelta(days=3), favorites=f) for i, f in enumerate((0, 2, 9))]
    _store(migrated, old + young)
    run = normalize(migrated, as_of=AS_OF)
    scores = _scores(migrated, run.run_id)
    provisional = [scores[("danbooru", 1000 + i)] for i in range(3)]
    assert all(flag for _, flag in provisional) and run.provisional == 3
    assert provisional[0][0] < provisional[1][0] < provisional[2][0]
    assert all(0 <= value <= 1 for value, _ in provisional)
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT method, log_offset > 0 FROM growth_curve WHERE run_id = %s", (run.run_id,))
        assert cur.fetchall() == [("cross-section", True)], "young posts sit lower: growth still to come"


def test_awkward_posts_are_excluded_or_handled_never_a_crash(migrated) -> None:
    created = AS_OF - timedelta(days=100)
    posts = [
        _post("danbooru", 1, created, favorites=5, deleted=True),
        _post("danbooru", 2, None, favorites=5),
        _post("danbooru", 3, created, favorites=None),  # no favourites: no metric
        _post("derpibooru", 4, created, up=0, down=0, score=0),  # no votes at all
        _post("derpibooru", 5, created, up=1, down=40, score=-39),  # negative
        _post("gelbooru", 6, created, score=-12),
        _post("danbooru", 7, AS_OF + timedelta(days=2), favorites=1),  # observed before its upload date
    ]
    _store(migrated, posts)
    run = normalize(migrated, as_of=AS_OF)
    assert run.excluded == {"deleted": 1, "no upload date": 1, "no metric": 1, "observed before upload": 1}
    scores = _scores(migrated, run.run_id)
    assert set(scores) == {("derpibooru", 4), ("derpibooru", 5), ("gelbooru", 6)}
    # Wilson's lower bound is 0 with no votes at all, and slightly above 0 for 1 up / 40 down.
    assert scores[("derpibooru", 4)][0] < scores[("derpibooru", 5)][0]


def test_runs_are_versioned_and_earlier_ones_kept(migrated) -> None:
    _store(migrated, [_post("e621", i, AS_OF - timedelta(days=50), favorites=i) for i in range(1, 20)])
    first = normalize(migrated, as_of=AS_OF)
    second = normalize(migrated.replace(normalize_metrics={"e621": "score"}), as_of=AS_OF)
    with connect(migrated) as conn, conn.cursor() as cur:
        assert latest_run_id(conn) == second.run_id > first.run_id
        cur.execute("SELECT run_id, count(*) FROM normalized_score GROUP BY 1 ORDER BY 1")
        assert cur.fetchall() == [(first.run_id, 19), (second.run_id, 19)]
        cur.execute("SELECT parameters->'metrics'->>'e621' FROM normalize_run ORDER BY run_id")
        assert [r[0] for r in cur.fetchall()] == ["favorites", "score"]


def test_only_the_newest_runs_keep_their_scores(migrated) -> None:
    """Retention: the scores of runs older than normalize_keep_runs are dropped, their records stay ('pruned')."""
    _store(migrated, [_post("e621", i, AS_OF - timedelta(days=50), favorites=i) for i in range(1, 20)])
    runs = [normalize(migrated.replace(normalize_keep_runs=2), as_of=AS_OF).run_id for _ in range(4)]
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, count(*) FROM normalized_score GROUP BY 1 ORDER BY 1")
        assert cur.fetchall() == [(runs[2], 19), (runs[3], 19)]
        cur.execute("SELECT run_id, status FROM normalize_run ORDER BY run_id")
        assert cur.fetchall() == [(runs[0], "pruned"), (runs[1], "pruned"), (runs[2], "complete"),
                                  (runs[3], "complete")]  # fmt: skip
        cur.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'normalized_score_run_%'")
        assert cur.fetchone()[0] == 2
        assert latest_run_id(conn) == runs[3]


def test_predictor_check_and_report_on_a_history(migrated, tmp_path: Path) -> None:
    rng = random.Random(9)
    posts, early = [], []
    for index in range(1, 801):
        created = AS_OF - timedelta(days=40 + index // 2)
        final = int(rng.lognormvariate(3, 1))
        posts.append(_post("danbooru", index, created, favorites=final))
        early_value = max(0, int(final * rng.uniform(0.2, 0.5)))
        early.append((_post("danbooru", index, created, favorites=early_value), created + timedelta(days=2)))
    with connect(migrated) as conn:
        for post, at in early:
            append_snapshots(conn, [post], at)
    _store(migrated, posts)
    run = normalize(migrated, as_of=AS_OF)
    with connect(migrated) as conn:
        check = evaluate_provisional(conn, run.run_id, migrated.normalize_metrics, migrated.maturity_days)
        report = build_report(conn, tmp_path / "report", run.run_id)
    assert check.pairs == 800 and check.held_back > 100
    assert check.spearman > 0.6, check
    assert "KS distance" in report.text and "Spearman" in report.text
    with connect(migrated) as conn, conn.cursor() as cur:  # the report's KS (in SQL) is scipy's on the same scores
        cur.execute("SELECT normalized_score FROM normalized_score WHERE run_id = %s AND NOT provisional",
                    (run.run_id,))  # fmt: skip
        scores = [row[0] for row in cur.fetchall()]
    count, distance = report.ks[("danbooru", "general")]
    assert count == len(scores) and distance == pytest.approx(kstest(scores, "uniform").statistic, abs=1e-12)
    assert {p.name for p in report.files} == {"distributions.png", "growth_curve.png", "report.txt"}
    assert (tmp_path / "report" / "distributions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT method, samples FROM growth_curve WHERE run_id = %s", (run.run_id,))
        assert cur.fetchall() == [("pairs", 800)]


def test_report_without_runs_says_what_to_do(migrated, tmp_path: Path) -> None:
    with connect(migrated) as conn, pytest.raises(LookupError, match="pony normalize run"):
        build_report(conn, tmp_path)


def test_the_reports_histograms_are_counted_by_the_server(migrated) -> None:
    """The reports page's before/after plot: per site, the latest run's log metric and normalised score binned in
    SQL (no row read into the web server) — the same counts numpy's histogram gives on every row."""
    import numpy as np

    from pony_tasks.reports.plots import NORMALIZED_BINS, RAW_BINS, normalization_histograms

    rng = random.Random(8)
    posts = [_post(site, index + 1, AS_OF - timedelta(days=40 + index), favorites=rng.randint(0, 900))
             for site in ("danbooru", "e621") for index in range(300)]  # fmt: skip
    _store(migrated, posts)
    with connect(migrated) as conn:
        assert normalization_histograms(conn) == {}, "no run yet"
    run = normalize(migrated, as_of=AS_OF).run_id
    with connect(migrated) as conn:
        histograms = normalization_histograms(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT site, log_metric, normalized_score FROM normalized_score WHERE run_id = %s "
                        "AND NOT provisional", (run,))  # fmt: skip
            rows = cur.fetchall()
    assert sorted(histograms) == [(kind, site) for kind in ("normalized", "raw") for site in ("danbooru", "e621")]
    for site in ("danbooru", "e621"):
        raw = np.array([r for s, r, _ in rows if s == site])
        normalized = np.array([n for s, _, n in rows if s == site])
        lo, hi, counts = histograms[("raw", site)]
        assert (lo, hi) == pytest.approx((raw.min(), raw.max()))
        for values, (low, high, got), bins in ((raw, (lo, hi, counts), RAW_BINS),
                                               (normalized, histograms[("normalized", site)], NORMALIZED_BINS)):
            position = (values - low) / (high - low) * bins
            expected = np.bincount(np.minimum(position.astype(int), bins - 1), minlength=bins)
            on_an_edge = int((np.abs(position - position.round()) < 1e-9).sum())  # either bin is right
            assert got.sum() == len(values) and np.abs(got - expected).sum() <= 2 * on_an_edge, (got, expected)
