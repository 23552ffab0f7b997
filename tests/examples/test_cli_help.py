"""Every example script answers ``--help`` in plain text without importing torch."""

import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPTS = (
    "examples.quick_start",
    "examples.quick_start_data.generate",
    "examples.startup_search.train",
    "examples.startup_search.search",
    "examples.startup_search.make_sample_dataset",
    "examples.cars.train",
    "examples.cars.evaluate",
    "examples.cars.serving",
    "examples.cifar100.train_simple",
    "examples.cifar100.train_with_pytorch_metric_learning",
    "examples.cifar100.train_with_xbm",
    "examples.mining_round",
)
HEAVY = (
    "torch",
    "numpy",
    "pytorch_lightning",
    "quaterion",
    "quaterion_models",
    "torchvision",
    "transformers",
    "sentence_transformers",
)
# Runs the module as ``python -m`` would, with --help, then reports which heavy modules the
# interpreter had imported by the time argparse exited.
WRAPPER = """
import json, runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    code = None
except SystemExit as exit:
    code = exit.code
heavy = sorted(name for name in HEAVY if name in sys.modules)
print("\\n" + json.dumps({"code": code, "heavy": heavy}))
"""


# Runs as __main__ but reads no command line (a fixed demo of the servable API).
NO_OPTIONS = ("examples.models_demo",)


def command_line_scripts():
    """Modules under examples/ that run as ``__main__`` and take options."""
    found = []
    for folder, _dirs, files in os.walk(os.path.join(REPO_ROOT, "examples")):
        for name in files:
            if not name.endswith(".py"):
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as file:
                text = file.read()
            if '__name__ == "__main__"' in text:
                relative = os.path.relpath(os.path.join(folder, name[:-3]), REPO_ROOT)
                found.append(relative.replace(os.sep, "."))
    return sorted(found)


def test_every_command_line_script_is_listed():
    assert sorted(SCRIPTS + NO_OPTIONS) == command_line_scripts()


@pytest.mark.parametrize("module", SCRIPTS)
def test_help_is_plain_and_imports_no_torch(module):
    completed = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{WRAPPER}", module],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    help_text, _, report = completed.stdout.rstrip().rpartition("\n")
    assert json.loads(report) == {"code": 0, "heavy": []}, completed.stderr
    assert help_text.startswith("usage: ")
    assert "``" not in help_text and ":func:" not in help_text
    if module == "examples.cars.serving":
        assert "--arch" not in help_text  # the backbone comes from the tuned model
