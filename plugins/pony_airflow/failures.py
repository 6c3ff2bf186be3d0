"""Failures that tell the truth: a permanent error fails its task at once (no retries), and a run with a failed task
is never shown green.

- :func:`fail_fast` wraps a task's Python callable: an error that retrying cannot fix
  (:func:`pony_tasks.errors.is_permanent`) becomes ``AirflowFailException`` — the alert comes now, not after the
  retries' back-off (18–26 minutes with the defaults).
- :class:`PermanentStageFailure` is what a ``pony`` stage command's permanent exit codes become.
- :func:`fail_run_when_a_task_fails` adds the DAG's final task ``run_outcome`` (trigger rule ``one_failed``,
  downstream of every task): when anything failed it fails, so the run fails even when every leaf was skipped.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from pony_tasks.errors import is_permanent

log = logging.getLogger(__name__)
RUN_OUTCOME_TASK = "run_outcome"


class PermanentStageFailure(AirflowFailException):
    """A stage command failed in a way retrying cannot fix (exit code 2 or 3)."""


def _no_retry(exc: Exception) -> AirflowFailException | None:
    """The AirflowFailException a permanent error becomes (None: raise it as it is — transient, or already one)."""
    if isinstance(exc, AirflowFailException) or not is_permanent(exc):
        return None
    return AirflowFailException(f"{type(exc).__name__}: {exc} — permanent (the same input fails the same way), "
                                "so it is not retried")  # fmt: skip


def fail_fast(function: Callable) -> Callable:
    """The callable, with permanent errors turned into ``AirflowFailException`` (generators too)."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def generator(*args: Any, **kwargs: Any):
            try:
                yield from function(*args, **kwargs)
            except Exception as exc:
                if (failure := _no_retry(exc)) is None:
                    raise
                raise failure from exc

        return generator

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any):
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            if (failure := _no_retry(exc)) is None:
                raise
            raise failure from exc

    return wrapper


def pony_task(function: Callable | None = None, **kwargs: Any):
    """``@task`` for the pipeline's light Python tasks, with :func:`fail_fast`; ``@pony_task.short_circuit`` too."""
    from airflow.sdk import task

    if function is None:
        return lambda f: task(**kwargs)(fail_fast(f))
    return task(**kwargs)(fail_fast(function))


def _short_circuit(function: Callable | None = None, **kwargs: Any):
    from airflow.sdk import task

    if function is None:
        return lambda f: task.short_circuit(**kwargs)(fail_fast(f))
    return task.short_circuit(**kwargs)(fail_fast(function))


pony_task.short_circuit = _short_circuit  # type: ignore[attr-defined]


def _fail_the_run(dag_run=None, ti=None) -> None:  # noqa: ANN001 - Airflow context
    failed = "see the failed task"
    try:
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[dag_run.run_id]).get(dag_run.run_id, {})
        bad = sorted(task for task, state in states.items() if state in ("failed", "upstream_failed"))
        failed = ", ".join(f"{task} ({states[task]})" for task in bad) or failed
    except Exception:  # noqa: BLE001 - the message is a courtesy; failing the run is the job
        log.debug("could not read the run's task states", exc_info=True)
    raise AirflowFailException(f"this run failed: {failed}. The failed task's log and alert say why.")


def fail_run_when_a_task_fails(dag) -> None:  # noqa: ANN001 - airflow.sdk.DAG
    """Add ``run_outcome`` downstream of every task of ``dag`` (call it last, inside the ``with DAG`` block)."""
    from airflow.providers.standard.operators.python import PythonOperator

    others = list(dag.tasks)
    outcome = PythonOperator(task_id=RUN_OUTCOME_TASK, python_callable=_fail_the_run, trigger_rule="one_failed",
                             retries=0, on_failure_callback=[], dag=dag,  # the failed task has alerted already
                             doc_md="Runs only when a task of this run failed, and fails: the run is red, never "
                                    "green with skipped leaves.")  # fmt: skip
    for task in others:
        task >> outcome
