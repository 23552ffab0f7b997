"""The Sphinx site builds with warnings as errors, as in CI."""

import os
import subprocess
import sys

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_sphinx_build_has_no_warnings(tmp_path):
    source = os.path.join(REPO_ROOT, "docs", "source")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            source,
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for page in ("index.html", os.path.join("tutorials", "01_quick_start.html")):
        assert (tmp_path / "html" / page).is_file()
    # every figure the tutorials reference is a generated file that Sphinx copied
    images = set(os.listdir(tmp_path / "html" / "_images"))
    assert {
        "triplet_collapse.png",
        "skip_connection_identity.png",
        "softmax_confidence.png",
        "cache_epoch_time.png",
        "head_comparison.png",
    } <= images
