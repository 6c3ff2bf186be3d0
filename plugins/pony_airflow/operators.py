"""Operators from execution plans: the DAGs ask for a stage, :func:`pony_tasks.execution.plan_execution` decides where
it runs, and this module only translates — a local plan becomes a task running the ``pony`` command in the worker, a
Kubernetes plan a KubernetesPodOperator with the worker image, resources, GPU limits, node selector, tolerations
and the settings Secret."""

from __future__ import annotations

import logging
import subprocess
from typing import Any

from pony_airflow.failures import PermanentStageFailure
from pony_tasks.config import ExecutionTarget, Settings
from pony_tasks.errors import PERMANENT_EXIT_CODES
from pony_tasks.execution import ExecutionPlan, StageCommand, plan_execution, run_locally

log = logging.getLogger(__name__)


class StageFailed(RuntimeError):
    pass


def run_stage(argv: list[str]) -> str:
    """Run a local stage command (``run_locally``), streaming its output into the task log; returns its last output
    line (XCom)."""
    try:
        result = run_locally(
            ExecutionPlan(ExecutionTarget.local, tuple(argv)), on_line=lambda line: log.info("%s", line)
        )
    except subprocess.CalledProcessError as exc:
        tail = "\n".join(exc.output.splitlines()[-30:])
        message = f"`pony {' '.join(argv[3:])}` exited with {exc.returncode}:\n{tail}"
        if exc.returncode in PERMANENT_EXIT_CODES:  # bad arguments or settings, schema, data quality, a block
            raise PermanentStageFailure(message + "\n(permanent: not retried)") from None
        raise StageFailed(message) from None
    lines = result.stdout.splitlines()
    return lines[-1] if lines else ""


def run_pony_args(args: list[str]) -> str:
    """A mapped local stage: ``args`` are the ``pony`` arguments (as the pod variant gets them); the worker's plan
    supplies the program."""
    return run_stage(list(plan_execution(StageCommand(tuple(args))).argv))


def stage_operator(task_id: str, command: StageCommand, *, settings: Settings | None = None, **kwargs: Any):
    """One task running one ``pony`` command where the settings say (``execution_target``). Arguments may hold
    Jinja templates (``{{ data_interval_end | ts }}``): both operator kinds render them."""
    plan = plan_execution(command, settings)
    if plan.target is ExecutionTarget.local:
        from airflow.providers.standard.operators.python import PythonOperator

        return PythonOperator(task_id=task_id, python_callable=run_stage, op_args=[list(plan.argv)], **kwargs)
    return pod_operator(task_id, plan, **kwargs)


def mapped_stage_operator(task_id: str, template: StageCommand, arguments: Any, *,
                          settings: Settings | None = None, **kwargs: Any):  # fmt: skip
    """Dynamic task mapping: one task per entry of ``arguments`` (an XComArg of ``pony`` argument lists); resources
    and placement come from ``template``."""
    plan = plan_execution(template, settings)
    if plan.target is ExecutionTarget.local:
        from airflow.sdk import task

        return task(run_pony_args).override(task_id=task_id, **kwargs).expand(args=arguments)
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    return KubernetesPodOperator.partial(**pod_arguments(task_id, plan), **kwargs).expand(arguments=arguments)


def pod_arguments(task_id: str, plan: ExecutionPlan) -> dict[str, Any]:
    """KubernetesPodOperator keyword arguments for a Kubernetes plan (everything but ``arguments`` when mapped)."""
    from kubernetes.client import models as k8s

    if plan.target is not ExecutionTarget.kubernetes:
        raise ValueError(f"plan targets {plan.target.value}, not kubernetes")
    gpu = {"nvidia.com/gpu": str(plan.gpus)} if plan.gpus else {}
    scratch = {"ephemeral-storage": plan.scratch} if plan.scratch else {}
    budgets = [k8s.V1EnvVar(name="PONY_MEMORY_BUDGET_MIB", value=str(plan.memory_budget_mib))]
    if plan.scratch_budget_mib is not None:
        budgets.append(k8s.V1EnvVar(name="PONY_SCRATCH_BUDGET_MIB", value=str(plan.scratch_budget_mib)))
    return {
        "task_id": task_id,
        "name": f"pony-{task_id.replace('_', '-')}",
        "namespace": plan.namespace,
        "image": plan.image,
        "cmds": [plan.argv[0]],
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": plan.cpu, "memory": plan.memory, **gpu, **scratch},
            limits={"memory": plan.memory, **gpu, **scratch},
        ),
        "node_selector": plan.node_selector or None,
        "tolerations": [k8s.V1Toleration(**t) for t in plan.tolerations] or None,
        "env_from": [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=plan.env_secret))]
        if plan.env_secret else None,
        # the stage works in pieces that fit its pod (an explicit env var wins over the Secret's)
        "env_vars": budgets,
        "labels": {"app.kubernetes.io/name": "pony-pipeline", "pony/stage": plan.argv[1] if len(plan.argv) > 1 else ""},
        "get_logs": True,
        "on_finish_action": "delete_succeeded_pod",
    }  # fmt: skip


def pod_operator(task_id: str, plan: ExecutionPlan, **kwargs: Any):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    return KubernetesPodOperator(arguments=list(plan.argv[1:]), **pod_arguments(task_id, plan), **kwargs)
