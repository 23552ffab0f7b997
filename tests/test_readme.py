"""The README's usage sketch runs as written and its commands match .ci/run."""

import os
import re
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme() -> str:
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_usage_sketch_runs_and_reloaded_model_agrees(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", _readme(), flags=re.S)
    assert blocks, "README.md has no python usage sketch"
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    completed = subprocess.run(
        [sys.executable, "-c", blocks[0]], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    assert "reloaded model agrees" in completed.stdout
    assert (tmp_path / "servable" / "config.json").is_file()


def test_ci_runs_the_readme_test_command_verbatim():
    commands = re.findall(r"```bash\n(python3 -m venv .*?)\n```", _readme())
    test_command = [c for c in commands if "pytest" in c]
    assert len(test_command) == 1
    with open(os.path.join(REPO_ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci_lines = [line.strip() for line in f]
    assert test_command[0] in ci_lines
