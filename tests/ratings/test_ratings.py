"""Rating set sampling, ratings import/export and agreement, on a scraped and normalised sample."""

from __future__ import annotations

import io
import json
import random
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pony_tasks.boorus.engine import scrape
from pony_tasks.config import load_settings
from pony_tasks.db import connect
from pony_tasks.fakes.server import FakeBooru
from pony_tasks.images.fetch import fetch_images
from pony_tasks.normalize.run import normalize
from pony_tasks.ratings.agreement import rater_agreement
from pony_tasks.ratings.importing import export_ratings, import_ratings
from pony_tasks.ratings.sample import sample_rating_set
from tests.helpers import fast_settings


@pytest.fixture(scope="module")
def normalised_template(corpus, database_copies, tmp_path_factory) -> tuple[str, Path]:
    """Two sites scraped, images fetched and normalised once per module: (template database, its home)."""
    from pony_tasks.db import upgrade

    name = database_copies.create()
    home = tmp_path_factory.mktemp("normalised") / "home"
    settings = load_settings(home=home, database_url=database_copies.url(name))
    with connect(settings, check_schema=False) as conn:
        upgrade(conn)
    with FakeBooru("danbooru", corpus) as danbooru, FakeBooru("gelbooru", corpus) as gelbooru:
        scraping = fast_settings(settings, {"danbooru": danbooru, "gelbooru": gelbooru}, image_max_bytes=2 << 20)
        for site in ("danbooru", "gelbooru"):
            scrape(site, settings=scraping, now=corpus.reference_time, show_progress=False)
        fetch_images(settings=scraping, show_progress=False)
    normalize(settings, as_of=corpus.reference_time)
    return name, home


@pytest.fixture
def normalised(normalised_template, database_copies, tmp_path):
    """Each test's own copy of the normalised sample: its database and its object store."""
    template, home = normalised_template
    shutil.copytree(home, tmp_path / "home")
    return load_settings(home=tmp_path / "home", database_url=database_copies.url(database_copies.create(template)))


def _query(settings, sql: str, *args) -> list[tuple]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def test_rating_set_is_spread_over_strata(normalised) -> None:
    result = sample_rating_set(120, settings=normalised, seed=1)
    assert result.size == 120
    assert set(result.by_site) == {"danbooru", "gelbooru"}
    assert set(result.by_decile) == set(range(10)), "good, average and very bad images are all present"
    per_stratum = Counter(s for (s,) in _query(normalised, "SELECT stratum FROM rating_set_item"))
    available = Counter(
        s
        for (s,) in _query(
            normalised,
            """
            SELECT DISTINCT ON (i.sha256)
                   concat_ws('|', n.site, n.rating, least(9, floor(n.normalized_score * 10))::int,
                             extract(year FROM p.created_at)::int)
            FROM booru_post_image i JOIN normalized_score n USING (site, post_id)
            JOIN booru_post p USING (site, post_id)
            ORDER BY i.sha256""",
        )  # fmt: skip
    )
    # Round-robin: a stratum gets its k-th image only after every stratum that still had images got k − 1.
    for a in available:
        for b in available:
            if per_stratum[a] > per_stratum[b] + 1:
                assert per_stratum[b] == available[b], (a, per_stratum[a], b, per_stratum[b])
    again = sample_rating_set(50, settings=normalised, seed=1)
    first = {s for (s,) in _query(normalised, "SELECT sha256 FROM rating_set_item WHERE set_id = %s", result.set_id)}
    second = {s for (s,) in _query(normalised, "SELECT sha256 FROM rating_set_item WHERE set_id = %s", again.set_id)}
    assert not first & second, "a new set skips images already picked"


def test_deleted_posts_never_enter_a_rating_set(normalised) -> None:
    with connect(normalised) as conn, conn.cursor() as cur:  # deleted after the normalisation run
        cur.execute("""UPDATE booru_post SET deleted = true WHERE post_id IN (
                           SELECT post_id FROM booru_post_image ORDER BY post_id LIMIT 200)
                       RETURNING site, post_id""")
        gone = set(cur.fetchall())
    result = sample_rating_set(10_000, settings=normalised, seed=2)
    members = set(_query(normalised, "SELECT site, post_id FROM rating_set_item WHERE set_id = %s", result.set_id))
    assert len(gone) == 200 and members and not gone & members


def test_sampling_needs_a_normalisation_run(migrated) -> None:
    with pytest.raises(LookupError, match="pony normalize run"):
        sample_rating_set(10, settings=migrated)


def _write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("sha256,site,post_id,rating,rater,timestamp\n" + "\n".join(rows) + "\n")
    return path


def test_import_is_all_or_nothing_names_bad_rows_and_is_idempotent(normalised, tmp_path: Path) -> None:
    shas = [s for (s,) in _query(normalised, "SELECT sha256 FROM image ORDER BY sha256 LIMIT 3")]
    ((site, post_id),) = _query(normalised, "SELECT site, post_id FROM booru_post_image WHERE sha256 = %s", shas[2])
    good = [f"{shas[0]},,,4,alice,2026-11-20T10:00:00Z", f"{shas[1]},,,2,alice,2026-11-20T10:01:00",
            f",{site},{post_id},5,bob,2026-11-21T09:00:00+02:00"]  # fmt: skip
    bad = [f"{shas[0]},,,7,carol,2026-11-20T10:00:00Z", f"{'0' * 64},,,3,carol,2026-11-20T10:00:00Z",
           f"{shas[0]},,,3,carol,last tuesday", f"{shas[0]},,,3.5,carol,2026-11-20T10:00:00Z",
           ",gelbooru,999999999,3,carol,2026-11-20T10:00:00Z", f"{shas[0]},,,3,,2026-11-20T10:00:00Z"]  # fmt: skip
    path = _write_csv(tmp_path / "ratings.csv", good + bad)
    refused = import_ratings(path, settings=normalised)
    assert refused.refused and refused.imported == 0
    assert [p.split(":")[0] for p in refused.problems] == [f"line {n}" for n in range(5, 11)]
    assert "outside 1–5" in refused.problems[0] and "unknown image" in refused.problems[1]
    assert "ISO 8601" in refused.problems[2] and "whole number" in refused.problems[3]
    assert "no stored image" in refused.problems[4] and "rater is missing" in refused.problems[5]
    assert _query(normalised, "SELECT count(*) FROM human_rating") == [(0,)]
    partial = import_ratings(path, settings=normalised, skip_invalid=True)
    assert (partial.imported, len(partial.problems)) == (3, 6)
    again = import_ratings(path, settings=normalised, skip_invalid=True)
    assert (again.imported, again.already_present) == (0, 3)
    rows = _query(normalised, "SELECT rater, rating, rated_at FROM human_rating ORDER BY rated_at")
    assert rows[-1] == ("bob", 5, datetime(2026, 11, 21, 7, 0, tzinfo=UTC))


def test_jsonl_export_round_trip_and_agreement(normalised, tmp_path: Path) -> None:
    shas = [s for (s,) in _query(normalised, "SELECT sha256 FROM image ORDER BY sha256 LIMIT 60")]
    rng = random.Random(4)
    lines = []
    for sha in shas:
        truth = rng.randint(1, 5)
        lines.append({"sha256": sha, "rating": truth, "rater": "alice", "timestamp": "2026-11-20T10:00:00Z"})
        noisy = min(5, max(1, truth + rng.choice((-1, 0, 0, 0, 1))))
        lines.append({"sha256": sha, "rating": str(noisy), "rater": "bob", "timestamp": "2026-11-20T11:00:00Z"})
    path = tmp_path / "ratings.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert import_ratings(path, settings=normalised).imported == 120
    with connect(normalised) as conn:
        agreement = rater_agreement(conn)
        exported = io.StringIO()
        assert export_ratings(conn, exported, "jsonl") == 120
    assert agreement.images_with_several_raters == 60 and agreement.raters == {"alice": 60, "bob": 60}
    assert 0.6 < agreement.krippendorff_alpha < 1.0
    records = [json.loads(line) for line in exported.getvalue().splitlines()]
    assert {r["sha256"] for r in records} == set(shas) and all(r["site"] for r in records)
    reimport = tmp_path / "exported.jsonl"
    reimport.write_text(exported.getvalue())
    assert import_ratings(reimport, settings=normalised).already_present == 120


def test_agreement_needs_two_raters(normalised) -> None:
    with connect(normalised) as conn:
        assert rater_agreement(conn).krippendorff_alpha is None


def test_a_rating_set_holds_one_image_per_work(normalised) -> None:
    """Images linked into one work (the same picture on two sites) are one candidate: its canonical image."""
    rows = _query(normalised, """SELECT i.sha256 FROM booru_post_image i JOIN normalized_score n USING (site, post_id)
                                 ORDER BY i.sha256 LIMIT 6""")  # fmt: skip
    shas = [sha for (sha,) in rows]
    with connect(normalised) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO work (canonical_sha256) VALUES (%s) RETURNING work_id", (shas[2],))
        work_id = cur.fetchone()[0]
        for sha in shas[:3]:
            cur.execute("INSERT INTO work_image (sha256, work_id) VALUES (%s, %s)", (sha, work_id))
    picked = {sha for (sha,) in _query(normalised, "SELECT sha256 FROM rating_set_item WHERE set_id = %s",
                                       sample_rating_set(100_000, settings=normalised).set_id)}  # fmt: skip
    assert shas[2] in picked and not picked & set(shas[:2])  # the canonical image stands for its work
    assert set(shas[3:]) <= picked
    # a later set never offers another image of a work that is already in a set
    with pytest.raises(LookupError, match="no image to sample"):
        sample_rating_set(10, settings=normalised)


def _plant_clustering(settings, sizes: list[int]) -> dict[int, int]:
    """An active style clustering over the stored images with these cluster sizes (the rest in cluster 0)."""
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO embedding_model (name, pretrained, dimension, image_size) VALUES ('t', 't', 4, 8) "
                    "RETURNING model_id")  # fmt: skip
        model = cur.fetchone()[0]
        cur.execute("""INSERT INTO style_clustering (embedding_model_id, clusters, seed, parameters, input_sha256,
                           images, centroids_key, status) VALUES (%s, %s, 0, '{}', 'x', 0, 'k', 'active')
                       RETURNING version_id""", (model, len(sizes) + 1))  # fmt: skip
        version = cur.fetchone()[0]
        cur.execute("SELECT sha256 FROM image ORDER BY md5(sha256)")
        images = [row[0] for row in cur.fetchall()]
        assigned, start = {}, 0
        for cluster, size in enumerate(sizes, start=1):
            for sha in images[start : start + size]:
                assigned[sha] = cluster
            start += size
        for sha in images[start:]:
            assigned[sha] = 0
        cur.executemany("INSERT INTO style_cluster_member VALUES (%s, %s, %s, 1.0)",
                        [(version, sha, cluster) for sha, cluster in assigned.items()])  # fmt: skip
        counts: dict[int, int] = {}
        for cluster in assigned.values():
            counts[cluster] = counts.get(cluster, 0) + 1
        cur.executemany("INSERT INTO style_cluster (version_id, cluster_id, images) VALUES (%s, %s, %s)",
                        [(version, c, n) for c, n in counts.items()])  # fmt: skip
    return counts


def test_every_style_cluster_is_in_the_rating_set(normalised) -> None:
    """With an active clustering each cluster gets k images (a smaller one all it has); the same draw without style
    strata misses the small clusters."""
    sizes = _plant_clustering(normalised, [3, 6, 12, 12, 25])
    with_styles = sample_rating_set(90, settings=normalised, seed=4, per_cluster=10)
    without = sample_rating_set(90, settings=normalised, seed=4, include_previous=True, styles=False)

    def per_cluster(set_id: int) -> dict[int, int]:
        rows = _query(normalised, """SELECT m.cluster_id, count(*) FROM rating_set_item r JOIN style_cluster_member m
                                     USING (sha256) WHERE r.set_id = %s GROUP BY 1""", set_id)  # fmt: skip
        return dict(rows)

    got, plain = per_cluster(with_styles.set_id), per_cluster(without.set_id)
    assert all(got.get(c, 0) >= min(10, n) for c, n in sizes.items()), (got, sizes)
    assert with_styles.by_cluster == got and with_styles.clusters_short == {1: 3, 2: 6}
    assert "style clusters of clustering" in with_styles.describe()
    assert any(plain.get(c, 0) < min(10, n) for c, n in sizes.items()), plain  # the comparison the strata fix
    assert without.style_version is None and "left out of the strata (--no-styles)" in without.describe()


def test_stats_show_test_retest_drift_and_coverage_of_the_synthetic_raters(normalised, tmp_path: Path) -> None:
    """The synthetic raters rate ~3 % of their images again (as the rating page brings them back); `pony ratings
    stats` prints each one's test–retest agreement, drift per day and ratings per site, decile and style cluster;
    the trainer counts a rater's repeated ratings of an image as their mean."""
    from pony_tasks.aesthetic.train import rated_targets
    from pony_tasks.fakes.corpus import SampleCorpus
    from pony_tasks.fakes.synthetic_ratings import RATERS, write_synthetic_ratings
    from pony_tasks.ratings.consistency import consistency
    from tests.helpers import run_pony

    _plant_clustering(normalised, [5, 40])
    picked = sample_rating_set(600, settings=normalised, seed=3, per_cluster=5)
    ratings = tmp_path / "ratings.csv"
    with connect(normalised) as conn:
        rows = write_synthetic_ratings(conn, SampleCorpus(), ratings, set_id=picked.set_id)
    import_ratings(ratings, settings=normalised)
    assert 2 * picked.size < rows < 2 * picked.size * 1.08
    with connect(normalised) as conn:
        found = consistency(conn)
        targets = rated_targets(conn)
        repeated = _query(normalised, "SELECT sha256, rater, avg(rating)::float8 FROM human_rating GROUP BY 1, 2 "
                                      "HAVING count(*) = 2 LIMIT 1")[0]  # fmt: skip
    assert [r.rater for r in found.retest] == list(RATERS)
    assert all(r.images >= 5 and r.alpha is not None and 0 < r.alpha <= 1 for r in found.retest), found.retest
    assert {g.key for g in found.by_site} == {"danbooru", "gelbooru"} and len(found.by_cluster) == 3
    assert set(found.drift) == set(RATERS)
    sha, rater, mean = repeated
    others = _query(normalised, "SELECT avg(rating)::float8 FROM human_rating WHERE sha256 = %s AND rater <> %s "
                                "GROUP BY rater", sha, rater)  # fmt: skip
    expected = (mean + sum(r[0] for r in others)) / (1 + len(others))
    assert abs(targets[sha][0] - (expected - 1) / 4) < 1e-9, "a rater's two ratings count as their mean, once"
    env = {"PONY_HOME": str(normalised.home), "PONY_DATABASE_URL": normalised.database_url.get_secret_value()}
    shown = run_pony("ratings", "stats", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "test–retest" in shown.stdout and f"{RATERS[0]}: " in shown.stdout and "Krippendorff" in shown.stdout
    assert "ratings by style cluster (clustering v" in shown.stdout


def test_weakest_clusters_are_the_unrated_then_the_worst_judged() -> None:
    from pony_tasks.ratings.sample import weakest_clusters

    heldout = {"0": {"n": 50, "mae": 0.10}, "1": {"n": 40, "mae": 0.30}, "2": {"n": 30, "mae": 0.20},
               "3": {"n": 2, "mae": 0.05}}  # fmt: skip
    rated = {0: 200, 1: 150, 2: 120, 3: 4, 4: 0}
    assert weakest_clusters(heldout, rated, [0, 1, 2, 3, 4], share=0.6) == [4, 3, 1]
    assert weakest_clusters(heldout, rated, [0, 1, 2], share=0.01) == [1]  # at least one


def test_focus_weakest_samples_only_where_the_model_is_weakest(normalised) -> None:
    from pony_tasks.ratings.sample import focus_on_weakest

    sizes = _plant_clustering(normalised, [10, 30, 30, 30])
    with connect(normalised) as conn, conn.cursor() as cur:
        cur.execute("SELECT version_id, embedding_model_id FROM style_clustering")
        style, model = cur.fetchone()
        metrics = {"style_version": style, "heldout_by_cluster": {str(c): {"n": 20, "mae": 0.1 + 0.05 * c}
                                                                  for c in sizes}}  # fmt: skip
        cur.execute("""INSERT INTO aesthetic_model (embedding_model_id, architecture, hyperparameters, metrics,
                           training_set_sha256, training_images, weights_key, score_cdf, status)
                       VALUES (%s, 'mlp', '{}', %s, 'h', 0, 'k', '{0,1}', 'active')""", (model, json.dumps(metrics)))
        cur.execute("""INSERT INTO human_rating (sha256, rating, rater, rated_at, source)
                       SELECT sha256, 3, 'ana', now(), 't' FROM style_cluster_member WHERE cluster_id <> 1""")
        focus = focus_on_weakest(conn, share=0.4)
    assert focus.clusters == [1, 4] and "0 ratings" in focus.why[1]  # unrated first, then the highest error
    picked = sample_rating_set(20, settings=normalised, seed=1, clusters=focus.clusters, include_previous=True)
    got = _query(normalised, """SELECT DISTINCT m.cluster_id FROM rating_set_item r JOIN style_cluster_member m
                                USING (sha256) WHERE r.set_id = %s""", picked.set_id)  # fmt: skip
    assert {row[0] for row in got} <= {1, 4} and picked.size == 20
