"""Style clusters (issue 16): k-means of CLIP embeddings with ids kept stable across versions, for caption tags."""

STYLE_TAG = "style_cluster_{}"


def style_tag(cluster_id: int) -> str:
    """The caption tag of a style cluster (kept with underscores, like the quality tags)."""
    return STYLE_TAG.format(cluster_id)


def active_version(conn) -> int | None:
    """The active style clustering (``pony styles activate``), if any — light: captions import it."""
    with conn.cursor() as cur:
        cur.execute("SELECT version_id FROM style_clustering WHERE status = 'active'")
        row = cur.fetchone()
    return row[0] if row else None
