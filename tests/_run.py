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
    options = {"cwd": REPO_ROOT, "env": env, "capture_output": True, "text": True}
    return subprocess.run([sys.executable, *args], check=False, timeout=timeout, **options)


def blocking_prelude(*packages: str) -> str:
    """Source that makes importing any of ``packages`` (top-level names) raise ImportError;
    a script starting with it proves that what it imports needs none of them. It first checks
    that each of them is indeed blocked (exit status non-zero otherwise)."""
    return (
        "import importlib, pkgutil, sys\n"
        f"BLOCKED = {set(packages)!r}\n"
        "class Blocker:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'blocked import of {name}')\n"
        "sys.meta_path.insert(0, Blocker())\n"
        "for _name in BLOCKED:  # the blocker itself must work\n"
        "    try:\n"
        "        importlib.import_module(_name)\n"
        "    except ImportError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(f'blocker failed for {_name}')\n"
    )
