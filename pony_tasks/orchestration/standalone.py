"""Environment for a local Airflow on the embedded defaults (``make airflow``): Airflow's metadata in a database
``airflow`` on the same PostgreSQL server as the pipeline's data, the project's dags/ and plugins/, LocalExecutor,
new DAGs unpaused."""

from __future__ import annotations

import shlex
from pathlib import Path

from psycopg2.extensions import make_dsn, parse_dsn

from pony_tasks.config import Settings
from pony_tasks.db.connection import database_url
from pony_tasks.db.embedded import create_database_if_missing

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_DATABASE = "airflow"


def metadata_url(settings: Settings) -> str:
    """SQLAlchemy URL of Airflow's metadata database on the pipeline's server (created if missing)."""
    parts = parse_dsn(database_url(settings))
    admin = dict(parts, dbname="postgres")
    create_database_if_missing(make_dsn(**admin), AIRFLOW_DATABASE)
    host = parts.get("host", "")
    user = parts.get("user", "postgres")
    password = parts.get("password")
    credentials = f"{user}:{password}" if password else user
    if host.startswith("/"):  # Unix socket (the embedded server)
        return f"postgresql+psycopg2://{credentials}@/{AIRFLOW_DATABASE}?host={host}"
    port = parts.get("port", "5432")
    return f"postgresql+psycopg2://{credentials}@{host}:{port}/{AIRFLOW_DATABASE}"


def airflow_environment(settings: Settings) -> dict[str, str]:
    home = settings.resolved_home.resolve()
    return {
        "PONY_HOME": str(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(settings),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # dev only: every visitor of localhost:8080 is admin (no login form); see README for a password login
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    }


def shell_exports(environment: dict[str, str]) -> str:
    return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in environment.items())
