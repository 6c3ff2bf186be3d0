"""``pony normalize report``: distributions before and after, cohort sizes, provisional counts, uniformity (KS) per
(site, rating), the growth curve and the predictor check — as a text table and PNG plots."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg2.extensions

from pony_tasks.boorus.sites import DEFAULT_SITES
from pony_tasks.normalize.evaluate import evaluate_provisional
from pony_tasks.normalize.run import latest_run_id

BUILT_IN_SITES = tuple(DEFAULT_SITES)  # danbooru, e621, derpibooru, gelbooru


def ordered_sites(names) -> tuple[str, ...]:
    """The built-in sites in their usual order, then any other configured site by name."""
    names = set(names)
    return tuple(s for s in BUILT_IN_SITES if s in names) + tuple(sorted(names - set(BUILT_IN_SITES)))
MIN_GROUP_FOR_KS = 100


@dataclass
class NormalizeReport:
    run_id: int
    text: str
    ks: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)  # (site, rating) -> (n, KS)
    files: list[Path] = field(default_factory=list)


def build_report(conn: psycopg2.extensions.connection, output_dir: Path, run_id: int | None = None) -> NormalizeReport:
    run_id = run_id or latest_run_id(conn)
    if run_id is None:
        raise LookupError("no complete normalisation run yet: run `pony normalize run` first")
    with conn.cursor() as cur:
        cur.execute("SELECT as_of, parameters, summary, status FROM normalize_run WHERE run_id = %s", (run_id,))
        found = cur.fetchone()
        if found is None:
            raise LookupError(f"normalisation run {run_id} does not exist")
        as_of, parameters, summary, status = found
        if status == "pruned":
            raise LookupError(f"normalisation run {run_id}'s scores were dropped (only the newest normalize_keep_runs "
                              "runs keep theirs): report on a newer run")  # fmt: skip
        # aggregates in PostgreSQL, never the run's rows in Python (one row per post: 30M at the real size)
        per_site = _per_site(cur, run_id)
        ks = _uniformity(cur, run_id)
        histograms = _histograms(cur, run_id)
        cur.execute(
            "SELECT site, age_bucket, log_offset, samples, method FROM growth_curve WHERE run_id = %s ORDER BY 1, 2",
            (run_id,),
        )
        curve = cur.fetchall()
    check = evaluate_provisional(conn, run_id, parameters["metrics"], parameters["maturity_days"])
    conn.rollback()

    lines = [
        f"normalisation run {run_id} as of {as_of:%Y-%m-%d %H:%M} UTC — metrics {json.dumps(parameters['metrics'])}, "
        f"maturity {parameters['maturity_days']:g} days, cohorts of ≥ {parameters['min_cohort_size']} matured posts",
        f"excluded: {json.dumps(summary.get('excluded', {}))}",
        "",
        f"{'site':<11}{'matured':>8}{'provis.':>8}{'cohorts':>8}   log(metric) p10/p50/p90/p99         "
        "normalised p10/p50/p90",
    ]
    sites = ordered_sites(set(parameters["metrics"]) | set(per_site))
    for site in sites:
        if site not in per_site:
            lines.append(f"{site:<11}{'—':>8}")
            continue
        matured, provisional, cohort_count, logs, scores = per_site[site]
        lines.append(
            f"{site:<11}{matured:>8}{provisional:>8}{cohort_count:>8}   "
            + "/".join(f"{v:5.2f}" for v in logs)
            + "          "
            + "/".join(f"{v:4.2f}" for v in scores)
        )
    lines += ["", f"uniformity of matured normalised scores per (site, rating), groups of ≥ {MIN_GROUP_FOR_KS}:"]
    for (site, rating), (count, distance) in ks.items():
        lines.append(f"  {site:<11}{rating:<13} n={count:<6} KS distance {distance:.4f}")
    if not ks:
        lines.append("  (no group is large enough yet)")
    lines += ["", "growth curve (log-growth still to come, by age at observation):"]
    for site, bucket, offset, samples, method in curve:
        lines.append(f"  {site:<11} from {bucket:>4g} d: +{offset:5.2f} (n={samples}, {method})")
    lines += ["", check.describe()]
    report = NormalizeReport(run_id, "\n".join(lines), ks)
    output_dir.mkdir(parents=True, exist_ok=True)
    report.files = _plots(histograms, curve, output_dir, sites)
    text_path = output_dir / "report.txt"
    text_path.write_text(report.text + "\n", encoding="utf-8")
    report.files.append(text_path)
    return report


RATINGS = ("general", "sensitive", "questionable", "explicit")
LOG_BINS, SCORE_BINS = 30, 20


def _per_site(cur, run_id: int) -> dict[str, tuple]:
    """site → (matured, provisional, cohorts, log-metric p10/p50/p90/p99, normalised p10/p50/p90) of matured posts
    (quantiles interpolated as numpy's default; NaN where a site has no matured post)."""
    cur.execute(
        """SELECT site, count(*) FILTER (WHERE NOT provisional), count(*) FILTER (WHERE provisional),
                  count(DISTINCT (rating, cohort)) FILTER (WHERE NOT provisional),
                  percentile_cont(ARRAY[0.1, 0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY log_metric)
                      FILTER (WHERE NOT provisional),
                  percentile_cont(ARRAY[0.1, 0.5, 0.9]) WITHIN GROUP (ORDER BY normalized_score)
                      FILTER (WHERE NOT provisional)
           FROM normalized_score WHERE run_id = %s GROUP BY site""",
        (run_id,),
    )
    nan = float("nan")
    return {site: (matured, provisional, cohorts, logs or [nan] * 4, scores or [nan] * 3)
            for site, matured, provisional, cohorts, logs, scores in cur.fetchall()}  # fmt: skip


def _uniformity(cur, run_id: int) -> dict[tuple[str, str], tuple[int, float]]:
    """(site, rating) → (n, Kolmogorov–Smirnov distance of the matured scores from uniform 0..1) for groups of at
    least MIN_GROUP_FOR_KS: max over the sorted scores x_i of max(i/n − x_i, x_i − (i − 1)/n), as scipy's kstest."""
    cur.execute(
        """SELECT site, rating, max(n), max(greatest(position::float8 / n - normalized_score,
                                                     normalized_score - (position - 1)::float8 / n))
           FROM (SELECT site, rating, normalized_score,
                        row_number() OVER (PARTITION BY site, rating ORDER BY normalized_score) AS position,
                        count(*) OVER (PARTITION BY site, rating) AS n
                 FROM normalized_score WHERE run_id = %s AND NOT provisional) x
           GROUP BY site, rating HAVING count(*) >= %s""",
        (run_id, MIN_GROUP_FOR_KS),
    )
    found = {(site, rating): (int(n), float(distance)) for site, rating, n, distance in cur.fetchall()}
    return {(site, rating): found[(site, rating)] for site in ordered_sites({s for s, _ in found}) for rating in RATINGS
            if (site, rating) in found}  # fmt: skip


def _histograms(cur, run_id: int) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(site, rating) → (log-metric bin edges, counts in them, counts of the normalised score in 20 bins of 0..1),
    matured posts, binned as matplotlib's hist would (the last bin holds its right edge)."""
    cur.execute(
        """WITH m AS (SELECT site, rating, log_metric, normalized_score FROM normalized_score
                      WHERE run_id = %(run)s AND NOT provisional),
           span AS (SELECT site, rating,
                           CASE WHEN max(log_metric) > min(log_metric) THEN min(log_metric)
                                ELSE min(log_metric) - 0.5 END AS lo,
                           CASE WHEN max(log_metric) > min(log_metric) THEN max(log_metric)
                                ELSE max(log_metric) + 0.5 END AS hi
                    FROM m GROUP BY 1, 2)
           SELECT site, rating, lo, hi, 'log', least(width_bucket(log_metric, lo, hi, %(log_bins)s), %(log_bins)s),
                  count(*)
           FROM m JOIN span USING (site, rating) GROUP BY 1, 2, 3, 4, 5, 6
           UNION ALL
           SELECT site, rating, 0, 1, 'score', least(width_bucket(normalized_score, 0, 1, %(score_bins)s),
                                                     %(score_bins)s), count(*)
           FROM m GROUP BY 1, 2, 3, 4, 5, 6""",
        {"run": run_id, "log_bins": LOG_BINS, "score_bins": SCORE_BINS},
    )
    found: dict[tuple[str, str], list] = {}
    for site, rating, lo, hi, kind, bucket, count in cur.fetchall():
        entry = found.setdefault((site, rating), [None, np.zeros(LOG_BINS), np.zeros(SCORE_BINS)])
        if kind == "log":
            entry[0] = np.linspace(lo, hi, LOG_BINS + 1)
            entry[1][max(bucket, 1) - 1] += count
        else:
            entry[2][max(bucket, 1) - 1] += count
    return {key: tuple(value) for key, value in found.items()}


def _plots(histograms: dict, curve: list[tuple], output_dir: Path, sites: tuple[str, ...]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(RATINGS, ("#4c9be8", "#f2b33d", "#e8743b", "#c0392b"), strict=True))
    figure, axes = plt.subplots(2, len(sites), figsize=(4 * len(sites), 6.5), squeeze=False)
    for column, site in enumerate(sites):
        for rating in RATINGS:
            if (site, rating) not in histograms:
                continue
            edges, log_counts, score_counts = histograms[(site, rating)]
            axes[0][column].hist(edges[:-1], bins=edges, weights=log_counts, alpha=0.55, color=colours[rating],
                                 label=rating)  # fmt: skip
            score_edges = np.linspace(0, 1, SCORE_BINS + 1)
            axes[1][column].hist(score_edges[:-1], bins=score_edges, weights=score_counts, alpha=0.55,
                                 color=colours[rating])  # fmt: skip
        axes[0][column].set_title(f"{site}: before (log metric)")
        axes[1][column].set_title(f"{site}: after (normalised)")
        axes[1][column].set_xlim(0, 1)
        axes[0][column].set_xlabel("log(1 + site metric)")
        axes[1][column].set_xlabel("normalised score (percentile, 0..1)")
        for row in (0, 1):
            axes[row][column].set_ylabel("posts")
            if not axes[row][column].has_data():
                axes[row][column].text(0.5, 0.5, "no data yet", ha="center", va="center",
                                       transform=axes[row][column].transAxes)  # fmt: skip
    axes[0][0].legend(fontsize=8)
    figure.suptitle("Popularity per site and rating, before and after normalisation (matured posts)")
    figure.tight_layout()
    distributions = output_dir / "distributions.png"
    figure.savefig(distributions, dpi=90)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 4))
    for site in sites:
        points = [(b, o) for s, b, o, _, _ in curve if s == site]
        if points:
            axis.plot(*zip(*points, strict=True), marker="o", label=site)
    axis.set_xlabel("age at observation (days, bucket start)")
    axis.set_ylabel("log-growth still to come")
    axis.set_title("Score-versus-age curve used for provisional scores")
    if axis.has_data():
        axis.legend()
    else:  # as the other panels: say so rather than draw empty axes with an empty legend
        axis.text(0.5, 0.5, "no data yet: the curve needs posts observed at several ages", ha="center",
                  va="center", transform=axis.transAxes)  # fmt: skip
    figure.tight_layout()
    growth = output_dir / "growth_curve.png"
    figure.savefig(growth, dpi=90)
    plt.close(figure)
    return [distributions, growth]
