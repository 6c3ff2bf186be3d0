"""What a style cluster is, for a person to look at: one contact sheet PNG per cluster (its images closest to the
centroid first, then its farthest members — the cluster's core and its edge) and an overview (a row per cluster)."""

from __future__ import annotations

import psycopg2.extensions

from pony_tasks.reports.contact_sheet import sheet_png
from pony_tasks.storage import ObjectStore
from pony_tasks.styles import style_tag
from pony_tasks.styles.registry import get_version


def _members(conn, version_id: int, cluster_id: int, core: int, edge: int) -> list[tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute(
            """(SELECT i.storage_key, m.similarity, 'core' FROM style_cluster_member m JOIN image i USING (sha256)
                WHERE m.version_id = %(v)s AND m.cluster_id = %(c)s ORDER BY m.similarity DESC, m.sha256 LIMIT %(core)s)
               UNION ALL
               (SELECT i.storage_key, m.similarity, 'edge' FROM style_cluster_member m JOIN image i USING (sha256)
                WHERE m.version_id = %(v)s AND m.cluster_id = %(c)s ORDER BY m.similarity, m.sha256 LIMIT %(edge)s)""",
            {"v": version_id, "c": cluster_id, "core": core, "edge": edge},
        )
        rows, seen = [], set()
        for key, similarity, kind in cur.fetchall():
            if key not in seen:
                seen.add(key)
                rows.append((key, f"{kind} cos {similarity:.2f}"))
        return rows


def cluster_sheets(conn: psycopg2.extensions.connection, store: ObjectStore, version_id: int | None = None, *,
                   core: int = 12, edge: int = 4, overview_columns: int = 8) -> list[str]:  # fmt: skip
    """Write ``reports/styles/v<id>/cluster-<N>.png`` for every cluster and ``overview.png``; returns the keys."""
    version = get_version(conn, version_id)
    prefix = f"reports/styles/v{version.version_id}"
    with conn.cursor() as cur:
        cur.execute("""SELECT cluster_id, images, matched_from, shared FROM style_cluster WHERE version_id = %s
                       ORDER BY cluster_id""", (version.version_id,))  # fmt: skip
        clusters = cur.fetchall()
    keys, overview, labels = [], [], []
    for cluster_id, images, matched_from, shared in clusters:
        tiles = _members(conn, version.version_id, cluster_id, core, edge)
        origin = f"continues v{version.previous_version} ({shared} shared)" if matched_from is not None else "new id"
        title = (f"{style_tag(cluster_id)} (clustering v{version.version_id}): {images} images; {origin}. "
                 f"{core} closest to the centroid, then the {edge} farthest")  # fmt: skip
        per_row = 8
        key = f"{prefix}/cluster-{cluster_id}.png"
        store.put_bytes(key, sheet_png(store, [tiles[i:i + per_row] for i in range(0, len(tiles), per_row)], title))
        keys.append(key)
        overview.append(tiles[:overview_columns])
        labels.append(f"{style_tag(cluster_id)}\n{images} images\n{'new' if matched_from is None else 'kept'}")
    key = f"{prefix}/overview.png"
    store.put_bytes(key, sheet_png(store, overview, f"style clustering v{version.version_id}: {len(clusters)} "
                                   f"clusters of embedding model {version.embedding_model_id}, closest images "
                                   "first", row_labels=labels))  # fmt: skip
    return [key, *keys]
