"""captions_regenerate: a new caption set whenever a promotion updates the aesthetic_model asset or a new style
clustering is activated."""

from __future__ import annotations

from airflow.sdk import DAG

from pony_airflow.assets import AESTHETIC_MODEL, CAPTIONS, STYLE_CLUSTERS
from pony_airflow.defaults import dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails, pony_task
from pony_airflow.operators import stage_operator
from pony_airflow.params import check_params_task, dag_params
from pony_tasks.orchestration.stages import assign_styles, regenerate_captions, score_images

DOC = """
### Regenerate captions for a promoted aesthetic model

Scheduled on the `aesthetic_model` asset or the `style_clusters` asset (either one). A run started by a new style
clustering alone captions the active aesthetic version (with `style_cluster_N` tags: setting `caption_style_tags`).
Several promotions before a run collapse into one run: `choose_version`
reads every triggering event's `version_id` and captions the active one if it is among them (else the newest
named), logging the superseded ones. A manual trigger may name versions in the `version_ids` param. `score`
fills in the version's scores for images it has not scored yet (a just-promoted version has scored none);
`assign_styles` puts images embedded since the active style clustering into their nearest cluster;
`pony captions regenerate` then builds the whole set beside the active one and switches atomically; the **captions**
gate (exactly one band tag, nothing empty, length limits) then checks it. When the inputs are those of an existing set
(the same version, scheme, settings, and every work's tags and score: a replayed event, a re-run) no new set is made
and `check_captions` skips: no `captions` event, so no fine-tune is started for nothing.
"""

RULES = {
    "version_ids": {"default": [], "type": "array", "items": {"type": "integer", "minimum": 1},
                    "description": "Manual trigger: caption for these versions (asset events name them)."},
}

with DAG(
    dag_id="captions_regenerate",
    schedule=AESTHETIC_MODEL | STYLE_CLUSTERS,
    params=dag_params(RULES),
    **dag_kwargs(DOC, ["captions"]),
) as dag:

    @pony_task.short_circuit
    def choose_version(triggering_asset_events=None, ti=None) -> bool:
        from pony_airflow.params import checked_params
        from pony_tasks.orchestration.stages import caption_target
        from pony_tasks.orchestration.tasks import active_aesthetic_version, active_caption_set

        events = [event for events in (triggering_asset_events or {}).values() for event in events]
        versions = [int(event.extra["version_id"]) for event in events if "version_id" in (event.extra or {})]
        versions += checked_params(ti).get("version_ids") or []  # a manual trigger names them (checked integers)
        restyled = any("style_version" in (event.extra or {}) for event in events)
        target, superseded = caption_target(versions, active_aesthetic_version(), restyled)
        print(f"events name versions {sorted(set(versions))}; captioning {target}; superseded {superseded}")
        ti.xcom_push(key="version", value=target)
        ti.xcom_push(key="set_before", value=active_caption_set())  # check_captions: did this run change it?
        return target is not None

    version = "{{ ti.xcom_pull(task_ids='choose_version', key='version') }}"
    scored = stage_operator("score", score_images(version_id=version))  # images the version has not scored yet
    styled = stage_operator("assign_styles", assign_styles())  # images new since the clustering: nearest cluster
    regenerated = stage_operator("regenerate", regenerate_captions(version))

    @pony_task(outlets=[CAPTIONS])
    def check_captions(ti=None) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        from pony_airflow.notifiers import quality_gate_task
        from pony_tasks.orchestration.tasks import active_caption_set

        set_id = active_caption_set()
        if set_id is not None and set_id == ti.xcom_pull(task_ids="choose_version", key="set_before"):
            # `regenerate` made no new set (its inputs were those of the active one): nothing new downstream
            raise AirflowSkipException(f"caption set {set_id} is unchanged: no new captions event")
        return quality_gate_task("captions", set_id=set_id)

    check_params_task(RULES) >> choose_version() >> scored >> styled >> regenerated >> check_captions()
    fail_run_when_a_task_fails(dag)
