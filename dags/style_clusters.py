"""style_clusters (weekly or manual): re-cluster the embeddings into style clusters with stable ids, check, activate."""

from __future__ import annotations

from airflow.sdk import DAG

from pony_airflow.assets import STYLE_CLUSTERS
from pony_airflow.defaults import dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails, pony_task
from pony_airflow.operators import stage_operator
from pony_airflow.params import check_params_task, dag_params
from pony_tasks.orchestration.stages import cluster_styles, style_sheets

DOC = """
### Style clusters (issue 16)

Weekly, or triggered with parameters. `cluster` runs `pony styles run`: spherical k-means (faiss; a cold start is
the consensus of 200 k-means++ runs) of every embedding of the active aesthetic model's embedding model. With
`start = warm` it starts from the active version's centroids (a re-run on grown data keeps its partition but for what
the new images move); either way the new clusters take the ids of the active version's clusters they share most images
with (Hungarian assignment), so `style_cluster_17` keeps its meaning; unmatched clusters get ids never used before.
The same input clusters to the same version: then nothing is activated and no captions are rebuilt. The
**style_clusters** gate (no empty cluster; warnings when one cluster holds over half the images, an embedded image
has no cluster, or fewer than half the images keep their id) runs before `activate`, which emits the
`style_clusters` asset event `{"style_version": N}`: captions_regenerate then writes `style_cluster_N` tags (setting
`caption_style_tags`: add, replace_artist or off).
`sheets` draws a contact sheet per cluster under `reports/styles/v<N>/`.
"""

RULES = {
    "clusters": {"default": 32, "type": "integer", "minimum": 2, "maximum": 100_000,
                 "description": "Number of style clusters."},
    "seed": {"default": 0, "type": "integer", "minimum": 0},
    "start": {"default": "warm", "enum": ["warm", "cold"],
              "description": "warm: from the active version's centroids; cold: the consensus of fresh k-means++ runs."},
}  # fmt: skip

with DAG(dag_id="style_clusters", schedule="@weekly", params=dag_params(RULES),
         **dag_kwargs(DOC, ["captions", "styles"])) as dag:  # fmt: skip
    clustered = stage_operator("cluster", cluster_styles("{{ params.clusters }}", "{{ params.seed }}",
                                                         "{{ params.start }}"))  # fmt: skip

    @pony_task.short_circuit
    def choose_version(ti=None) -> bool:
        from pony_tasks.orchestration.tasks import style_version_to_activate

        version = style_version_to_activate(ti.xcom_pull(task_ids="cluster"))
        print("nothing new: that clustering is already active" if version is None else f"activating v{version}")
        ti.xcom_push(key="version", value=version)
        return version is not None

    @pony_task
    def check_clusters(ti=None) -> str:
        from pony_airflow.notifiers import quality_gate_task

        return quality_gate_task("style_clusters", version_id=ti.xcom_pull(task_ids="choose_version", key="version"))

    @pony_task(outlets=[STYLE_CLUSTERS])
    def activate(ti=None, outlet_events=None) -> str:
        from pony_tasks.orchestration.tasks import activate_style_version

        version = ti.xcom_pull(task_ids="choose_version", key="version")
        text = activate_style_version(version)
        outlet_events[STYLE_CLUSTERS].extra = {"style_version": version}
        print(text)
        return text

    sheets = stage_operator("sheets", style_sheets("{{ ti.xcom_pull(task_ids='choose_version', key='version') }}"))
    check_params_task(RULES) >> clustered >> choose_version() >> check_clusters() >> activate() >> sheets
    fail_run_when_a_task_fails(dag)
