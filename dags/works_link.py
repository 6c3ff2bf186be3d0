"""works_link: new images linked into works (the same picture across posts and sites) after embeddings land."""

from __future__ import annotations

from airflow.sdk import DAG

from pony_airflow.assets import EMBEDDINGS, WORKS
from pony_airflow.defaults import dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails, pony_task
from pony_airflow.operators import stage_operator
from pony_tasks.orchestration.stages import link_works

DOC = """
### Link works (issue 15)

Runs when the `embeddings` asset is updated. `pony works run --only-new` matches the images that are in no work yet
against every stored image. Candidate pairs come from the perceptual hashes (multi-index pHash of the picture and of
its inside when it has a border), the colour thumbnails' nearest neighbours and the CLIP embeddings (every pair above
cosine 0.90, k-means cells of ~500 vectors as SemDeDup does, spilled to local disk a group of cells at a time).
Each pair is judged from the pHash, brightness and colour, the 16×16 detail, the aspect ratio and the embeddings,
and stored with its evidence: `duplicate` (same work), `variant` (the same artist's alternate
version: linked, not merged) or `distinct`. Images are grouped into works (stable ids; an operator's decision on the
works page or with `pony works split` / `unlink` / `link` always wins). The **works** gate (one row per work; a site
with two files in one work, a merged share above 50 % or a jump of more than 5 points since the last run warn) then
updates the `works` asset. Rating sets, the aesthetic held-out split, captions (one per work, from every live post's
tags) and exports (one sample per work) read the works.

One task, not mapped (one pod: 8 GiB of memory, 32 GiB of scratch disk): a first build of 1M images took 330 s and
1.4 GiB, of 10M 72 min and 2.3 GiB on 2 cores (`benchmarks/scale.py`, README "The real size"); the per-image work
(decoding, hashing) is done where images are fetched. A first build or a backlog too large for one pod: the manual
**works_build** DAG, whose embedding join runs as mapped tasks.
"""

with DAG(dag_id="works_link", schedule=[EMBEDDINGS], **dag_kwargs(DOC, ["works"])) as dag:

    @pony_task(outlets=[WORKS])
    def check_works() -> str:
        from pony_airflow.notifiers import quality_gate_task

        return quality_gate_task("works")

    stage_operator("link", link_works()) >> check_works()
    fail_run_when_a_task_fails(dag)
