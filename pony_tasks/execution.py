"""Where heavy work runs — the ONE place that decides between the Airflow worker and a Kubernetes pod.

A stage is described as a :class:`StageCommand` (a ``pony`` command line plus the resources it needs).
:func:`plan_execution` turns it into an :class:`ExecutionPlan` from settings; the DAG helpers translate a plan into an
operator (a local call, or a KubernetesPodOperator) without deciding anything themselves. Pure data: no Airflow here.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from pony_tasks.config import ExecutionTarget, Settings, get_settings


@dataclass(frozen=True)
class StageCommand:
    """One ``pony`` invocation and what it needs to run."""

    argv: tuple[str, ...]
    needs_gpu: bool = False
    cpu: str = "1"
    memory: str = "4Gi"
    scratch: str | None = None  # local disk for scratch files (a pod's ephemeral storage); None: a little

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("a stage command needs at least a sub-command, e.g. ('db', 'upgrade')")


@dataclass(frozen=True)
class ExecutionPlan:
    target: ExecutionTarget
    argv: tuple[str, ...]  # full command line, starting with the program
    image: str | None = None
    namespace: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()
    env_secret: str | None = None  # Kubernetes Secret whose keys become the pod's environment (PONY_* settings)
    gpus: int = 0
    cpu: str = "1"
    memory: str = "4Gi"
    scratch: str | None = None

    @property
    def shell_command(self) -> str:
        return shlex.join(self.argv)

    @property
    def memory_budget_mib(self) -> int:
        """PONY_MEMORY_BUDGET_MIB for a pod of this plan: half its memory request (the rest: the interpreter, the
        libraries, numbers kept per image beside the budgeted pieces)."""
        return max(256, memory_mib(self.memory) // 2)

    @property
    def scratch_budget_mib(self) -> int | None:
        """PONY_SCRATCH_BUDGET_MIB for a pod of this plan: three quarters of its scratch request (None: none asked)."""
        return None if self.scratch is None else max(64, memory_mib(self.scratch) * 3 // 4)


def memory_mib(quantity: str) -> int:
    """A Kubernetes memory quantity (``8Gi``, ``512Mi``, ``2G``, bytes) in MiB."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix in sorted(units, key=len, reverse=True):
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * units[suffix]) // 2**20
    return int(float(quantity)) // 2**20


def plan_execution(command: StageCommand, settings: Settings | None = None) -> ExecutionPlan:
    settings = settings or get_settings()
    if settings.execution_target is ExecutionTarget.local:
        return ExecutionPlan(
            target=ExecutionTarget.local,
            argv=(sys.executable, "-m", "pony_tasks", *command.argv),
            cpu=command.cpu,
            memory=command.memory,
            scratch=command.scratch,
        )
    gpus = settings.gpu_per_pod if command.needs_gpu else 0
    return ExecutionPlan(
        target=ExecutionTarget.kubernetes,
        argv=("pony", *command.argv),
        image=settings.worker_image,
        namespace=settings.kubernetes_namespace,
        node_selector=dict(settings.gpu_node_selector) if command.needs_gpu else {},
        tolerations=tuple(dict(t) for t in settings.gpu_tolerations) if command.needs_gpu else (),
        env_secret=settings.kubernetes_env_secret,
        gpus=gpus,
        cpu=command.cpu,
        memory=command.memory,
        scratch=command.scratch,
    )


def run_locally(plan: ExecutionPlan, on_line: Callable[[str], None] | None = None) -> subprocess.CompletedProcess:
    """Run a local plan as a child process, handing each output line (stdout and stderr merged) to ``on_line`` as it
    arrives (an Airflow task streams them to its log); raises CalledProcessError with the output on failure."""
    if plan.target is not ExecutionTarget.local:
        raise ValueError(f"plan targets {plan.target.value}; only local plans run here")
    lines = []
    with subprocess.Popen(plan.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as child:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
    output = "".join(lines)
    if child.returncode != 0:
        raise subprocess.CalledProcessError(child.returncode, plan.argv, output=output)
    return subprocess.CompletedProcess(plan.argv, child.returncode, stdout=output)
