"""`make airflow` (scripts/airflow-standalone) stopped by Ctrl-C or SIGTERM leaves no process it started: Airflow's
components and task processes, the fake boorus, the embedded PostgreSQL (issue 27)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.airflow.conftest import ROOT
from tests.airflow.scheduler import free_port

pytestmark = pytest.mark.slow


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if any(text.encode() in (proc / part).read_bytes() for part in ("cmdline", "environ")):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200])
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_make_airflow_leaves_no_process_behind(tmp_path, stop) -> None:
    home, port = tmp_path / "home", free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PONY_", "AIRFLOW"))}
    env.update({"PONY_HOME": str(home), "AIRFLOW__API__PORT": str(port), "PONY_AIRFLOW_USERS": "ana:admin",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/"})  # fmt: skip
    log = tmp_path / "airflow.log"
    with open(log, "w") as out:
        script = subprocess.Popen([str(ROOT / "scripts" / "airflow-standalone")], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 420
        while "Airflow is up" not in log.read_text(errors="replace"):
            assert script.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(2)
        text = log.read_text(errors="replace")
        banner = text[text.index("Airflow is up"):]
        assert "ana / " in banner, "the generated password, once, plainly"
        assert _processes_mentioning(str(home)), "the check sees the running processes"
        # Ctrl-C signals the terminal's foreground process group (the script and its plain children); SIGTERM the
        # script alone (a service manager's stop)
        os.killpg(script.pid, stop) if stop == signal.SIGINT else script.send_signal(stop)
        script.wait(timeout=120)
        deadline = time.monotonic() + 30
        while (left := _processes_mentioning(str(home))) and time.monotonic() < deadline:
            time.sleep(1)
        assert not left, left
        assert "embedded PostgreSQL stopped" in log.read_text(errors="replace")
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
