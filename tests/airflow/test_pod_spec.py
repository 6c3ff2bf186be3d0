"""Kubernetes plans become pod specs with the worker image, resources, GPUs, placement and the settings Secret —
checked without a cluster (``build_pod_request_obj(dry_run=True)``)."""

from __future__ import annotations

from pony_airflow.operators import stage_operator
from pony_tasks.config import ExecutionTarget, load_settings
from pony_tasks.orchestration.stages import embed_range, fetch_images


def _settings():
    return load_settings(execution_target="kubernetes", worker_image="registry.example/pony:1.2.3",
                         kubernetes_namespace="pony-jobs", gpu_per_pod=2,
                         gpu_node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
                         kubernetes_env_secret="pony-settings")  # fmt: skip


def test_gpu_stage_pod_requests_gpus_with_selector_and_tolerations(airflow_db) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    settings = _settings()
    assert settings.execution_target is ExecutionTarget.kubernetes
    op = stage_operator("embed", embed_range("00", "7f", settings), settings=settings)
    assert isinstance(op, KubernetesPodOperator)
    pod = op.build_pod_request_obj(dry_run=True)
    container = pod.spec.containers[0]
    assert pod.metadata.namespace == "pony-jobs"
    assert container.image == "registry.example/pony:1.2.3"
    assert container.command == ["pony"]
    assert container.args[:2] == ["embed", "--model"] and "--from-sha" in container.args and "7f" in container.args
    assert container.resources.limits["nvidia.com/gpu"] == "2"
    assert container.resources.requests["nvidia.com/gpu"] == "2"
    assert container.resources.requests["memory"] == "16Gi"
    assert pod.spec.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert [(t.key, t.operator, t.effect) for t in pod.spec.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert container.env_from[0].secret_ref.name == "pony-settings"
    assert {e.name: e.value for e in container.env}["PONY_MEMORY_BUDGET_MIB"] == "8192"  # half of 16Gi


def test_cpu_stage_pod_has_no_gpu_and_no_gpu_placement(airflow_db) -> None:
    settings = _settings()
    pod = stage_operator("fetch", fetch_images(), settings=settings).build_pod_request_obj(dry_run=True)
    container = pod.spec.containers[0]
    assert "nvidia.com/gpu" not in (container.resources.limits or {})
    assert not pod.spec.node_selector and not pod.spec.tolerations
    assert container.args == ["images", "fetch", "--max-minutes", "50"]
    assert {e.name: e.value for e in container.env}["PONY_MEMORY_BUDGET_MIB"] == "1024"  # half of 2Gi
    assert "PONY_SCRATCH_BUDGET_MIB" not in {e.name for e in container.env}
    assert "ephemeral-storage" not in container.resources.requests


def test_the_works_pod_asks_for_scratch_disk_and_gets_a_scratch_budget(airflow_db) -> None:
    from pony_tasks.orchestration.stages import link_works

    container = stage_operator("works", link_works(), settings=_settings()).build_pod_request_obj(
        dry_run=True).spec.containers[0]  # fmt: skip
    assert container.resources.requests["ephemeral-storage"] == "32Gi"
    assert container.resources.limits["ephemeral-storage"] == "32Gi"
    env = {e.name: e.value for e in container.env}
    assert env["PONY_SCRATCH_BUDGET_MIB"] == str(32 * 1024 * 3 // 4) and env["PONY_MEMORY_BUDGET_MIB"] == "4096"


def test_memory_quantities_become_mib() -> None:
    from pony_tasks.execution import memory_mib

    assert [memory_mib(q) for q in ("8Gi", "512Mi", "2G", str(3 * 2**20))] == [8192, 512, 1907, 3]


def test_local_target_runs_the_same_command_in_the_worker(airflow_db) -> None:
    from airflow.providers.standard.operators.python import PythonOperator

    op = stage_operator("fetch", fetch_images(), settings=load_settings())
    assert isinstance(op, PythonOperator)
    assert op.op_args[0][-4:-2] == ["images", "fetch"] and op.op_args[0][1:3] == ["-m", "pony_tasks"]
