"""The library must run without Airflow (in pods, in the CLI): nothing under pony_tasks/ may import it."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pony_tasks"


def test_no_module_under_pony_tasks_imports_airflow() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "airflow"]
    assert not offenders, "\n".join(offenders)


def test_importing_every_module_loads_no_airflow() -> None:
    """Catches indirect imports too: load all of pony_tasks in a fresh interpreter and look at sys.modules."""
    script = (
        "import importlib, pkgutil, sys, pony_tasks\n"
        "for m in pkgutil.walk_packages(pony_tasks.__path__, 'pony_tasks.'):\n"
        "    if m.name != 'pony_tasks.__main__': importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n == 'airflow' or n.startswith('airflow.'))\n"
        "print(len(bad)); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
