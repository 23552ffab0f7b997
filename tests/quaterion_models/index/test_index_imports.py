"""``quaterion_models`` does not import Qdrant; the index imports without Lightning or quaterion."""

import subprocess
import sys
import textwrap
from pathlib import Path

from tests._run import blocking_prelude, run_python

REPO_ROOT = Path(__file__).resolve().parents[3]

SCRIPT = blocking_prelude(
    "pytorch_lightning", "lightning", "quaterion", "pytorch_metric_learning"
) + textwrap.dedent(
    """


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


MISSING_EXTRA = textwrap.dedent(
    """
    import sys

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"qdrant_edge", "qdrant_client"}:
                raise ImportError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, Blocker())
    from quaterion_models.index import SimilarityIndex  # imports without the extra
    from quaterion_models import SimilarityModel
    from quaterion_models.heads import EmptyHead
    from tests.quaterion_models.toy_encoders import StackEncoder

    model = SimilarityModel(encoders=StackEncoder(4), head=EmptyHead(4))
    for where in ({"path": "unused"}, {"url": "http://127.0.0.1:1"}):
        try:
            SimilarityIndex(model, distance="cosine", **where)
        except ImportError as err:
            print("ERROR:", err)
    """
)


def test_a_missing_extra_names_the_pip_extra():
    result = run_python("-c", MISSING_EXTRA)
    assert result.returncode == 0, result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 2
    assert "Qdrant Edge" in errors[0] and "qdrant-client" in errors[1]
    assert all("pip install 'quaterion[qdrant]'" in line for line in errors)
