"""Run Python in a child process from the repository root (for import and script tests)."""

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python *args`` in the repository root with it on ``PYTHONPATH``; text output captured,
    never raises on a non-zero exit (assert on ``returncode``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
