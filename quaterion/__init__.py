"""quaterion: fine-tuning framework for similarity learning (training side).

``Quaterion`` and ``TrainableModel`` are imported on first access, so that light
subpackages (``quaterion.utils``, ``quaterion.distances``, ``quaterion.loss``) can be
imported without pulling in pytorch-lightning.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = ["Quaterion", "TrainableModel"]

_LAZY = {
    "Quaterion": "quaterion.main",
    "TrainableModel": "quaterion.train.trainable_model",
}

if TYPE_CHECKING:  # pragma: no cover
    from quaterion.main import Quaterion
    from quaterion.train.trainable_model import TrainableModel


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'quaterion' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + list(_LAZY))
