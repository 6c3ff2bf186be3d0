"""Helpers for tests: running the real CLI in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def run_pony(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120):
    """Run the real `pony` CLI in a child process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PONY_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pony_tasks", *args],
        env=full_env,
        cwd=cwd or PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
