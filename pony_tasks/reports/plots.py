"""PNG plots from PostgreSQL and the object store: popularity before/after normalisation per site, aesthetic
versions with a calibration plot (predicted vs human), band counts per caption set, the latest fine-tune's
tag-controllability plot; and the latest data-quality results as rows. A plot with no data yet says so."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pony_tasks.db import connect

if TYPE_CHECKING:
    import numpy as np


def _figure(rows: int = 1, cols: int = 1, size=(11, 4)):  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(rows, cols, figsize=size, squeeze=False)


def _png(plt, figure) -> bytes:  # noqa: ANN001
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _empty(message: str) -> bytes:
    plt, figure, axes = _figure(size=(8, 1.5))
    axes[0][0].axis("off")
    axes[0][0].text(0.5, 0.5, message, ha="center", va="center")
    return _png(plt, figure)


# Histograms of the latest complete normalisation run, counted by the server (one row per site and bin, whatever the
# run's size: 30M posts are never read into the web server): each site's log metric in RAW_BINS bins between its own
# minimum and maximum, the normalised percentile in NORMALIZED_BINS bins over 0..1.
RAW_BINS, NORMALIZED_BINS = 40, 20
NORMALIZATION_HISTOGRAMS = """
    WITH s AS (SELECT site, log_metric, normalized_score FROM normalized_score
               WHERE run_id = (SELECT max(run_id) FROM normalize_run WHERE status = 'complete') AND NOT provisional),
    span AS (SELECT site, min(log_metric) AS lo, max(log_metric) AS hi FROM s GROUP BY site)
    SELECT s.site, 'raw', span.lo, span.hi,
           CASE WHEN span.hi > span.lo THEN least(width_bucket(s.log_metric, span.lo, span.hi, %(raw)s), %(raw)s)
                ELSE 1 END, count(*)
    FROM s JOIN span USING (site) GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT site, 'normalized', 0, 1, least(width_bucket(normalized_score, 0, 1, %(normalized)s), %(normalized)s),
           count(*)
    FROM s GROUP BY 1, 2, 3, 4, 5"""


def normalization_histograms(conn) -> dict[tuple[str, str], tuple[float, float, np.ndarray]]:  # noqa: ANN001
    """(``raw`` or ``normalized``, site) → (lower edge, upper edge, counts per bin) of the latest complete run."""
    import numpy as np

    with conn.cursor() as cur:
        cur.execute(NORMALIZATION_HISTOGRAMS, {"raw": RAW_BINS, "normalized": NORMALIZED_BINS})
        rows = cur.fetchall()  # one row per site, kind and bin
    histograms: dict[tuple[str, str], tuple[float, float, np.ndarray]] = {}
    for site, kind, lo, hi, bucket, count in rows:
        bins = RAW_BINS if kind == "raw" else NORMALIZED_BINS
        counts = histograms.setdefault((kind, site), (float(lo), float(hi), np.zeros(bins, np.int64)))[2]
        counts[min(max(int(bucket), 1), bins) - 1] += count
    return histograms


def normalization() -> bytes:
    import numpy as np

    with connect() as conn:
        histograms = normalization_histograms(conn)
    if not histograms:
        return _empty("no normalisation run yet: `pony normalize run`")
    plt, figure, axes = _figure(1, 2)
    for (kind, site), (lo, hi, counts) in sorted(histograms.items()):
        axis = axes[0][0] if kind == "raw" else axes[0][1]
        axis.stairs(counts, np.linspace(lo, hi if hi > lo else lo + 1, len(counts) + 1), label=site)
    axes[0][0].set_title("before: log of each site's metric")
    axes[0][1].set_title("after: normalised percentile (flat = comparable)")
    for axis in axes[0]:
        axis.legend()
    return _png(plt, figure)


def aesthetic() -> bytes:
    import numpy as np

    with connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT version_id, status, metrics FROM aesthetic_model ORDER BY version_id")
        versions = cur.fetchall()
        cur.execute("""SELECT s.score, avg(h.rating)::float8 FROM aesthetic_score s
                       JOIN human_rating h USING (sha256)
                       WHERE s.version_id = (SELECT version_id FROM aesthetic_model WHERE status = 'active')
                       GROUP BY s.sha256, s.score""")  # fmt: skip
        pairs = cur.fetchall()
    if not versions:
        return _empty("no aesthetic model yet: `pony aesthetic train`")
    plt, figure, axes = _figure(1, 2)
    labels = [f"v{v}{'*' if status == 'active' else ''}" for v, status, _ in versions]
    for key in ("spearman", "pairwise_accuracy"):
        axes[0][0].plot(labels, [m.get(key) or 0 for _, _, m in versions], marker="o", label=key)
    axes[0][0].set_title("held-out metrics per version (* active)")
    axes[0][0].legend()
    if pairs:
        predicted = np.array([p for p, _ in pairs])
        human = np.array([(h - 1) / 4 for _, h in pairs])
        bins = np.linspace(0, 1, 11)
        index = np.clip(np.digitize(predicted, bins) - 1, 0, 9)
        centres = [predicted[index == b].mean() for b in range(10) if (index == b).any()]
        means = [human[index == b].mean() for b in range(10) if (index == b).any()]
        axes[0][1].scatter(predicted, human, s=4, alpha=0.3)
        axes[0][1].plot(centres, means, marker="o", color="black", label="mean human per predicted decile")
        axes[0][1].plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        # below the axes, not over the points
        axes[0][1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize=8, frameon=False)
    else:
        axes[0][1].text(0.5, 0.5, "no human ratings of scored images yet", ha="center", va="center",
                        transform=axes[0][1].transAxes)  # fmt: skip
    axes[0][1].set_xlabel("predicted score")
    axes[0][1].set_ylabel("mean human rating (1–5 as 0..1)")
    axes[0][1].set_title("calibration of the active version: predicted vs human (0..1)")
    return _png(plt, figure)


def bands() -> bytes:
    with connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT set_id, band, count(*) FROM caption GROUP BY 1, 2 ORDER BY 1, 2")
        rows = cur.fetchall()
    if not rows:
        return _empty("no caption set yet: `pony captions regenerate`")
    plt, figure, axes = _figure()
    sets = sorted({s for s, _, _ in rows})
    width = 0.8 / len(sets)
    for offset, set_id in enumerate(sets):
        counts = {band: n for s, band, n in rows if s == set_id}
        axes[0][0].bar([b + offset * width for b in range(1, 10)], [counts.get(b, 0) for b in range(1, 10)],
                       width=width, label=f"set {set_id}")  # fmt: skip
    axes[0][0].set_xticks(range(1, 10), [f"score_{b}" for b in range(1, 10)])
    axes[0][0].set_title("captions per quality band")
    axes[0][0].legend()
    return _png(plt, figure)


def finetune() -> bytes:
    from pony_tasks.storage import open_store

    with connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT plot_key FROM finetune_eval ORDER BY eval_id DESC LIMIT 1")
        row = cur.fetchone()
    if row is None:
        return _empty("no fine-tune evaluation yet: `pony finetune eval`")
    return open_store().get_bytes(row[0])


PLOTS: dict[str, Callable[[], bytes]] = {"normalization": normalization, "aesthetic": aesthetic, "bands": bands,
                                         "finetune": finetune}  # fmt: skip


# Suites whose batch is "what arrived since the run started": an hourly scrape or fetch that found nothing new has no
# rows, and that is normal (it is never a pass either: the reports page shows it as "nothing new").
EMPTY_IS_NORMAL = frozenset({"scraped_posts", "images"})


def latest_quality_results(limit: int = 20) -> list[dict]:
    """The newest stored checks; ``docs`` is each one's Data Docs page relative to the Data Docs site; ``normal``:
    passed, or no rows where an empty batch is expected (:data:`EMPTY_IS_NORMAL`)."""
    from pony_tasks.quality.checks import data_docs_index

    site = data_docs_index().parent
    with connect() as conn, conn.cursor() as cur:
        cur.execute("""SELECT checked_at, suite, batch, rows_checked, outcome, blocking_failures, warnings, failed,
                              coalesce(docs_page, docs_path) FROM dq_result ORDER BY result_id DESC LIMIT %s""",
                    (limit,))  # fmt: skip
        rows = cur.fetchall()

    def relative(path: str | None) -> str | None:
        if path and not Path(path).is_absolute():  # the page's path within the site (published on the store)
            return path
        try:
            return str(Path(path).relative_to(site)) if path else None
        except ValueError:  # a page of another PONY_HOME
            return None

    return [{"checked_at": at.isoformat(timespec="seconds"), "suite": suite, "batch": batch, "rows": count,
             "outcome": outcome, "blocking": blocking, "warnings": warnings, "docs": relative(docs),
             "normal": outcome == "passed" or (outcome == "no_rows" and suite in EMPTY_IS_NORMAL),
             "failed": [f"{f['expectation']} on {f.get('column')} ({f['severity']})" for f in failed]}
            for at, suite, batch, count, outcome, blocking, warnings, failed, docs in rows]  # fmt: skip


def latest_finetune_gates(limit: int = 20) -> list[dict]:
    """The newest fine-tune runs (Airflow run id or CLI context) with every gate decision and what came of it:
    skipped (and why), waiting for approval, rejected, or approved."""
    with connect() as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT context, dataset, max(decided_at) AS at,
                      json_agg(json_build_object('gate', gate, 'passed', passed, 'detail', detail)
                               ORDER BY decision_id) AS decisions
               FROM finetune_gate GROUP BY context, dataset ORDER BY max(decision_id) DESC LIMIT %s""",
            (limit,),
        )
        rows = cur.fetchall()
    out = []
    for context, dataset, at, decisions in rows:
        unmet = [d for d in decisions if not d["passed"]]
        approval = next((d for d in decisions if d["gate"] == "human_approval"), None)
        if unmet:
            outcome = ("rejected by a person" if approval is not None and not approval["passed"] else
                       "skipped — " + "; ".join(f"{d['gate']}: {d['detail']}" for d in unmet))  # fmt: skip
        else:
            outcome = "approved" if approval else "gates passed, waiting for approval"
        out.append({"context": context, "dataset": dataset, "decided_at": at.isoformat(timespec="seconds"),
                    "outcome": outcome, "skipped": bool(unmet), "decisions": decisions})  # fmt: skip
    return out


if __name__ == "__main__":  # pragma: no cover - manual use: python -m pony_tasks.reports.plots OUT_DIR
    import sys
    from pathlib import Path

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, make in PLOTS.items():
        (out / f"{name}.png").write_bytes(make())
    print(json.dumps(latest_quality_results(5), indent=1))
