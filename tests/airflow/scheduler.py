"""A real Airflow for tests: API server (UI, REST, execution API), scheduler, dag-processor and triggerer as separate
processes against a PostgreSQL metadata database, with the LocalExecutor; and a small REST client for it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL = ("success", "failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done.stdout


@contextmanager
def running_airflow(env: dict[str, str], home: Path) -> Iterator[AirflowAPI]:
    """Migrate, create the gpu pool, start every component; yields a REST client logged in as ``ana``."""
    port = free_port()
    env = {**env, "AIRFLOW_HOME": str(home), "AIRFLOW__API__PORT": str(port),
           "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/"}  # fmt: skip
    home.mkdir(parents=True, exist_ok=True)
    airflow(env, "db", "migrate")
    airflow(env, "pools", "set", "gpu", "1", "GPU slots")
    processes: list[tuple[str, subprocess.Popen]] = []
    try:
        for component in COMPONENTS:
            extra = ("--port", str(port)) if component == "api-server" else ()
            log = open(home / f"{component}.log", "w")  # noqa: SIM115 - closed with the process
            processes.append((component, subprocess.Popen([sys.executable, "-m", "airflow", component, *extra],
                                                          env=env, stdout=log, stderr=subprocess.STDOUT)))  # fmt: skip
        api = AirflowAPI(f"http://127.0.0.1:{port}", home, processes, env)
        api.login("ana", "ana-password")
        yield api
    finally:
        for _, process in processes:
            process.terminate()
        for _, process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


class AirflowAPI:
    def __init__(self, base_url: str, home: Path, processes: list[tuple[str, subprocess.Popen]],
                 env: dict[str, str]) -> None:  # fmt: skip
        self.base_url, self.home, self.processes, self.env = base_url, home, processes, env
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def _alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                tail = (self.home / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"airflow {name} exited with {process.returncode}:\n{tail}")

    def login(self, user: str, password: str, timeout: float = 180) -> None:
        def token() -> str | None:
            try:
                response = self.client.post("/auth/token", json={"username": user, "password": password})
            except httpx.TransportError:
                return None
            return response.json()["access_token"] if response.status_code in (200, 201) else None

        access = self.wait(token, timeout, "the API server to accept a login")
        self.client.headers["Authorization"] = f"Bearer {access}"

    def wait(self, probe: Callable[[], Any], timeout: float, what: str, every: float = 2.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self._alive()
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}; logs under {self.home}")
            time.sleep(every)

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(f"/api/v2{path}", params=params)
        response.raise_for_status()
        return response.json()

    def send(self, method: str, path: str, body: dict) -> Any:
        response = self.client.request(method, f"/api/v2{path}", json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} → {response.status_code}: {response.text}")
        return response.json()

    def unpause(self, dag_id: str) -> None:
        self.send("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict) -> str:
        return self.send("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", order_by="run_after", limit=100)["dag_runs"]

    def tasks(self, dag_id: str, run_id: str) -> dict[str, dict]:
        items = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]
        return {t["task_id"] + (f"[{t['map_index']}]" if t["map_index"] >= 0 else ""): t for t in items}

    def settled(self, dag_ids: list[str]) -> bool:
        """Every run of these DAGs has finished (none queued or running)."""
        return all(run["state"] in TERMINAL for dag_id in dag_ids for run in self.runs(dag_id))

    def quiet(self, dag_ids: list[str], hold: float = 12.0) -> bool:
        """Every run of these DAGs has finished, and no new run appeared for ``hold`` seconds (asset events still
        on their way start runs a few seconds later)."""
        if not self.settled(dag_ids):
            return False
        before = {dag_id: len(self.runs(dag_id)) for dag_id in dag_ids}
        time.sleep(hold)
        return self.settled(dag_ids) and before == {dag_id: len(self.runs(dag_id)) for dag_id in dag_ids}

    def answer(self, dag_id: str, run_id: str, task_id: str, option: str, timeout: float = 300) -> dict:
        """Wait until the human-in-the-loop task asks, then answer it as the logged-in user (the UI's request)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"

        def asking() -> bool:
            return self.tasks(dag_id, run_id).get(task_id, {}).get("state") == "awaiting_input"

        self.wait(asking, timeout, f"{dag_id}.{task_id} to ask for a decision")
        # Airflow 3.3.2 races when the answer comes within a second of the question: the scheduler requeues the
        # task before the executor has reported the asking attempt finished, and marks it up_for_retry. People
        # take longer than that; so does this test (6 s went by between the two on a loaded 2-core machine).
        time.sleep(15)
        return self.send("PATCH", path, {"chosen_options": [option], "params_input": {}})

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict:
        def finished() -> dict | None:
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in TERMINAL else None

        return self.wait(finished, timeout, f"{dag_id} run {run_id} to finish")
