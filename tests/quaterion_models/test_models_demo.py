from pathlib import Path
from tests._run import run_python

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_models_demo_runs_and_reloaded_model_agrees():
    result = run_python(str(REPO_ROOT / "examples" / "models_demo.py"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "embeddings (4, 8), reloaded model agrees: True" in result.stdout
