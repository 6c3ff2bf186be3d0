"""Style clusters (issue 16): k-means of CLIP embeddings with ids kept stable across versions, for caption tags."""

STYLE_TAG = "style_cluster_{}"


def style_tag(cluster_id: int) -> str:
    """The caption tag of a style cluster (kept with underscores, like the quality tags)."""
    return STYLE_TAG.format(cluster_id)
