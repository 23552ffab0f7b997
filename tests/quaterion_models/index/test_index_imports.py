"""``quaterion_models`` does not import Qdrant; the index imports without Lightning or quaterion."""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import importlib, sys

    BLOCKED = {"pytorch_lightning", "lightning", "quaterion", "pytorch_metric_learning"}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked import of {name}")
            return None

    sys.meta_path.insert(0, Blocker())
    import quaterion_models
    from quaterion_models import SimilarityModel
    qdrant = sorted(m for m in sys.modules if m.split(".")[0] in {"qdrant_edge", "qdrant_client"})
    assert not qdrant, f"quaterion_models imported {qdrant}"
    for name in ["quaterion_models.index", "quaterion_models.index.embedded",
                 "quaterion_models.index.server"]:
        importlib.import_module(name)
    assert "qdrant_edge" in sys.modules and "qdrant_client" in sys.modules
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("OK")
    """
)


def test_qdrant_is_imported_only_with_the_index_module():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK")
