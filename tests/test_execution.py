import sys

import pytest

from pony_tasks.config import ExecutionTarget, load_settings
from pony_tasks.execution import StageCommand, plan_execution, run_locally


def test_local_plan_runs_the_cli_with_this_interpreter() -> None:
    plan = plan_execution(StageCommand(("config", "show", "--json")), load_settings(execution_target="local"))
    assert plan.target is ExecutionTarget.local
    assert plan.argv[:3] == (sys.executable, "-m", "pony_tasks")
    result = run_locally(plan)
    assert '"execution_target": "local"' in result.stdout


def test_kubernetes_plan_asks_for_gpus_only_for_gpu_work() -> None:
    settings = load_settings(
        execution_target="kubernetes",
        worker_image="registry/pony:1.2",
        gpu_per_pod=2,
        gpu_node_selector={"gpu": "h100"},
    )
    gpu = plan_execution(StageCommand(("embed",), needs_gpu=True, memory="32Gi"), settings)
    cpu = plan_execution(StageCommand(("normalize", "run")), settings)
    assert gpu.argv == ("pony", "embed") and gpu.image == "registry/pony:1.2"
    assert (gpu.gpus, gpu.node_selector, gpu.memory) == (2, {"gpu": "h100"}, "32Gi")
    assert (cpu.gpus, cpu.node_selector) == (0, {})
    with pytest.raises(ValueError, match="only local plans"):
        run_locally(gpu)


def test_empty_command_is_refused() -> None:
    with pytest.raises(ValueError, match="sub-command"):
        StageCommand(())
