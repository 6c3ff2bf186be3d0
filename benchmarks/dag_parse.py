"""DAG parse time per file, as the dag-processor sees it (Airflow already imported; target < 1 s per file).

Each file is parsed in a fresh process (so one file's imports do not make the next look cheap): the process imports
Airflow first (the dag-processor always has), then times ``DagBag`` on that one file. The baseline is an empty DAG
file parsed the same way, so the ratio shows what our imports and DAG construction add.

    .venv/bin/python benchmarks/dag_parse.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys, time
import airflow.sdk  # noqa: F401  (the dag-processor has Airflow imported)
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - started
errors = {k: str(v)[:200] for k, v in bag.import_errors.items()}
print(json.dumps({"seconds": elapsed, "dags": len(bag.dags), "errors": errors}))
"""
EMPTY_DAG = "from airflow.sdk import DAG\nwith DAG(dag_id='empty', schedule=None):\n    pass\n"


def parse(path: Path, home: str) -> dict:
    env = dict(os.environ, AIRFLOW_HOME=home, AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__LOGGING__LOGGING_LEVEL="ERROR", AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
               PYTHONPATH=str(ROOT / "plugins"))  # fmt: skip
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="pony-parse-")
    empty = Path(home) / "empty_dag.py"
    empty.write_text(EMPTY_DAG)
    files = [empty, *sorted((ROOT / "dags").glob("*.py"))]
    baseline = None
    print(f"{'file':<26} {'DAGs':>4} {'median s':>9} {'× empty':>8}  (target < 1 s per file)")
    for path in files:
        runs = [parse(path, home) for _ in range(args.repeat)]
        median = statistics.median(r["seconds"] for r in runs)
        baseline = baseline or median
        errors = runs[-1]["errors"]
        flag = "" if median < 1 else "  OVER TARGET"
        print(f"{path.name:<26} {runs[-1]['dags']:>4} {median:>9.3f} {median / baseline:>8.1f}{flag}"
              + (f"  IMPORT ERRORS: {errors}" if errors else ""))  # fmt: skip


if __name__ == "__main__":
    main()
