"""Airflow test environment: an AIRFLOW_HOME of its own with a migrated metadata database (SQLite: Airflow's own
bookkeeping; the pipeline's data is in real PostgreSQL as everywhere else), set before Airflow is first imported."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins"))  # as Airflow does for its plugins folder: the DAGs import pony_airflow
_HOME = Path(tempfile.mkdtemp(prefix="pony-airflow-test-"))
os.environ.update({
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    # two real users of Airflow's simple auth manager for the UI plugin tests (passwords from the file below)
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "ana:admin,bob:viewer",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(_HOME / "passwords.json"),
    "AIRFLOW__API_AUTH__JWT_SECRET": "pony-test-secret-0123456789abcdef0123456789abcdef",
})  # fmt: skip
(_HOME / "passwords.json").write_text('{"ana": "ana-password", "bob": "bob-password"}')


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrated once per session (about 5 s)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ)
    return _HOME


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))
