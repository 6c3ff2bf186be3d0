"""The assets that connect the DAGs (each updated only after its data passed its quality gate)."""

from __future__ import annotations

from airflow.sdk import Asset

# Updated once per scrape or refresh run, after every site's gate has decided (never once per site: a run's sites
# finish minutes apart, and one event per site would start its consumers more than once); the extra names the sites
# whose posts passed, {"sites": [...]}.
BOORU_POSTS = Asset(name="booru_posts", uri="pony://booru_post", group="pony")
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
