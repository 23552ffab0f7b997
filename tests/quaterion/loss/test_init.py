import subprocess
import sys

import quaterion.loss as package

_STUB_PARENT = (
    # Stand-in for quaterion/__init__.py (which imports Quaterion -> Lightning), so this
    # checks what the subpackage itself imports.
    "import sys, types, pathlib; import importlib.util as u\n"
    "pkg = types.ModuleType('quaterion'); "
    "pkg.__path__ = [str(pathlib.Path(u.find_spec('quaterion').origin).parent)]\n"
    "sys.modules['quaterion'] = pkg\n"
)


NAMES = set(
    """
    SimilarityLoss GroupLoss PairwiseLoss ArcFaceLoss CenterLoss
    CircleLoss ContrastiveLoss CosFaceLoss FastAPLoss MultipleNegativesRankingLoss
    OnlineContrastiveLoss SoftmaxLoss TripletLoss
    """.split()
)


def test_exports_exactly_the_spec_names():
    assert set(package.__all__) == NAMES
    for name in NAMES:
        assert getattr(package, name).__name__ == name


def test_import_does_not_need_pytorch_metric_learning():
    code = _STUB_PARENT + (
        "sys.modules['pytorch_metric_learning'] = None\n"
        "import quaterion.loss, quaterion.distances\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pytorch_lightning', 'lightning'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
