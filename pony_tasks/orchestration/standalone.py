"""Environment for a local Airflow on the embedded defaults (``make airflow``): Airflow's metadata in a database
``airflow`` on the same PostgreSQL server as the pipeline's data, the project's dags/ and plugins/, LocalExecutor,
new DAGs unpaused."""

from __future__ import annotations

import json
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


FAKE_PORTS = {"danbooru": 18101, "derpibooru": 18102, "e621": 18103, "gelbooru": 18104}


def airflow_environment(settings: Settings, *, fakes: bool = False, users: str | None = None) -> dict[str, str]:
    """Every variable ``make airflow`` sets. ``fakes``: the pipeline pointed at the fake boorus on
    :data:`FAKE_PORTS` and the seeded random-init tiny CLIP model (written under ``PONY_HOME/models`` if missing).
    ``users`` (``"ana:admin,bob:user"``): named logins for Airflow's simple auth manager instead of its all-admins
    dev mode, so ratings say who gave them (Airflow writes the generated passwords to
    ``$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated`` and prints them at start)."""
    home = settings.resolved_home.resolve()
    environment = {
        "PONY_HOME": str(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(settings),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
    }
    if users:
        environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = users
        environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "False"
    else:  # dev only: every visitor of localhost:8080 is admin ("Anonymous"), no login form
        environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"
    if fakes:
        environment.update(fake_environment(home, settings.finetune_param_defaults))
    return environment


# What a fine-tune on the tiny random-init diffusion model runs with (the demo's too): minutes on a CPU, not hours.
TINY_FINETUNE = {"method": "lora", "steps": 40, "batch_size": 4, "resolution": 32, "checkpoint_every": 20,
                 "eval_steps": 4, "eval_resolution": 32}  # fmt: skip


def tiny_base_model(home: Path) -> Path:
    """The seeded random-init tiny SD-1.x model under ``PONY_HOME/models/tiny-sd`` (written when missing)."""
    from pony_tasks.finetune.tiny import build_tiny_pipeline

    base = home / "models" / "tiny-sd"
    if not (base / "model_index.json").exists():
        build_tiny_pipeline(base)
    return base


def fake_environment(home: Path, finetune_defaults: dict | None = None) -> dict[str, str]:
    """``PONY_*`` settings for the fake boorus on :data:`FAKE_PORTS`, the tiny demo CLIP model and the tiny diffusion
    model as the fine-tune's default base model (with :data:`TINY_FINETUNE`; ``finetune_defaults``, the setting
    ``finetune_param_defaults`` already made, win)."""
    from pony_tasks.embed.models import DEMO_MODEL, save_random_model
    from pony_tasks.fakes.local_sites import as_environment, fake_site_overrides_for

    weights = home / "models" / f"{DEMO_MODEL}-seed0.pt"
    if not weights.exists():
        save_random_model(weights)
    urls = {site: f"http://127.0.0.1:{port}" for site, port in FAKE_PORTS.items()}
    finetune = {"base_model": str(tiny_base_model(home)), **TINY_FINETUNE,
                **(finetune_defaults or {})}  # fmt: skip
    return {**as_environment(fake_site_overrides_for(urls)), "PONY_EMBED_MODEL": DEMO_MODEL,
            "PONY_EMBED_PRETRAINED": str(weights), "PONY_FINETUNE_PARAM_DEFAULTS": json.dumps(finetune)}


def shell_exports(environment: dict[str, str]) -> str:
    return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in environment.items())
