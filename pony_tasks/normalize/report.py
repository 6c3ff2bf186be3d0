"""``pony normalize report``: distributions before and after, cohort sizes, provisional counts, uniformity (KS) per
(site, rating), the growth curve and the predictor check — as a text table and PNG plots."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg2.extensions
from scipy.stats import kstest

from pony_tasks.normalize.evaluate import evaluate_provisional
from pony_tasks.normalize.run import latest_run_id

SITES = ("danbooru", "e621", "derpibooru", "gelbooru")
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
        cur.execute("SELECT as_of, parameters, summary FROM normalize_run WHERE run_id = %s", (run_id,))
        found = cur.fetchone()
        if found is None:
            raise LookupError(f"normalisation run {run_id} does not exist")
        as_of, parameters, summary = found
        cur.execute(
            """SELECT site, rating, provisional, log_metric, normalized_score, cohort
               FROM normalized_score WHERE run_id = %s""",
            (run_id,),
        )
        rows = cur.fetchall()
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
    by_site: dict[str, list] = {site: [r for r in rows if r[0] == site] for site in SITES}
    for site, site_rows in by_site.items():
        matured = [r for r in site_rows if not r[2]]
        if not site_rows:
            lines.append(f"{site:<11}{'—':>8}")
            continue
        logs = np.array([r[3] for r in matured]) if matured else np.array([np.nan])
        scores = np.array([r[4] for r in matured]) if matured else np.array([np.nan])
        cohort_count = len({(r[1], r[5]) for r in matured})
        lines.append(
            f"{site:<11}{len(matured):>8}{len(site_rows) - len(matured):>8}{cohort_count:>8}   "
            + "/".join(f"{v:5.2f}" for v in np.quantile(logs, [0.1, 0.5, 0.9, 0.99]))
            + "          "
            + "/".join(f"{v:4.2f}" for v in np.quantile(scores, [0.1, 0.5, 0.9]))
        )
    lines += ["", f"uniformity of matured normalised scores per (site, rating), groups of ≥ {MIN_GROUP_FOR_KS}:"]
    ks: dict[tuple[str, str], tuple[int, float]] = {}
    for site in SITES:
        for rating in ("general", "sensitive", "questionable", "explicit"):
            values = [r[4] for r in rows if r[0] == site and r[1] == rating and not r[2]]
            if len(values) >= MIN_GROUP_FOR_KS:
                ks[(site, rating)] = (len(values), float(kstest(values, "uniform").statistic))
                lines.append(f"  {site:<11}{rating:<13} n={len(values):<6} KS distance {ks[(site, rating)][1]:.4f}")
    if not ks:
        lines.append("  (no group is large enough yet)")
    lines += ["", "growth curve (log-growth still to come, by age at observation):"]
    for site, bucket, offset, samples, method in curve:
        lines.append(f"  {site:<11} from {bucket:>4g} d: +{offset:5.2f} (n={samples}, {method})")
    lines += ["", check.describe()]
    report = NormalizeReport(run_id, "\n".join(lines), ks)
    output_dir.mkdir(parents=True, exist_ok=True)
    report.files = _plots(rows, curve, output_dir)
    text_path = output_dir / "report.txt"
    text_path.write_text(report.text + "\n", encoding="utf-8")
    report.files.append(text_path)
    return report


def _plots(rows: list[tuple], curve: list[tuple], output_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratings = ("general", "sensitive", "questionable", "explicit")
    colours = dict(zip(ratings, ("#4c9be8", "#f2b33d", "#e8743b", "#c0392b"), strict=True))
    figure, axes = plt.subplots(2, len(SITES), figsize=(4 * len(SITES), 6.5), squeeze=False)
    for column, site in enumerate(SITES):
        for rating in ratings:
            matured = [r for r in rows if r[0] == site and r[1] == rating and not r[2]]
            if not matured:
                continue
            axes[0][column].hist([r[3] for r in matured], bins=30, alpha=0.55, color=colours[rating], label=rating)
            axes[1][column].hist([r[4] for r in matured], bins=20, range=(0, 1), alpha=0.55, color=colours[rating])
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
    for site in SITES:
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
