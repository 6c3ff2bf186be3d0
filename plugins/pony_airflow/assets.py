"""The assets that connect the DAGs (each updated only after its data passed its quality gate)."""

from __future__ import annotations

from airflow.sdk import Asset

from pony_tasks.orchestration.stages import SITES

BOORU_POSTS = {site: Asset(name=f"booru_posts_{site}", uri=f"pony://booru_post/{site}", group="pony")
               for site in SITES}  # fmt: skip
IMAGES = Asset(name="images", uri="pony://image", group="pony")
NORMALIZED_SCORES = Asset(name="normalized_scores", uri="pony://normalized_score", group="pony")
EMBEDDINGS = Asset(name="embeddings", uri="pony://image_embedding", group="pony")
AESTHETIC_SCORES = Asset(name="aesthetic_scores", uri="pony://aesthetic_score", group="pony")
# Updated by promotion; the event's extra carries {"version_id": N}. captions_regenerate is scheduled on it.
AESTHETIC_MODEL = Asset(name="aesthetic_model", uri="pony://aesthetic_model", group="pony")
# Updated when a style clustering is activated; the extra carries {"style_version": N}. captions_regenerate too.
STYLE_CLUSTERS = Asset(name="style_clusters", uri="pony://style_clustering", group="pony")
CAPTIONS = Asset(name="captions", uri="pony://caption", group="pony")
FINETUNE = Asset(name="finetune_model", uri="pony://finetune_run", group="pony")
WORKS = Asset(name="works", uri="pony://work", group="pony")
