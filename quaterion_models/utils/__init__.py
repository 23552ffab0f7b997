"""Helpers: moving nested tensors between devices, class import records, crash-safe writes,
type-checked config files.

``move_to_device`` (which needs torch) is imported on first use, so the torch-free parts
(atomic writes, errors, config files) serve the ONNX runtime without torch.
"""

from typing import TYPE_CHECKING, Any

from quaterion_models.utils.atomic import atomic_write as atomic_write
from quaterion_models.utils.classes import restore_class as restore_class
from quaterion_models.utils.classes import save_class_import as save_class_import
from quaterion_models.utils.config import ConfigFile as ConfigFile
from quaterion_models.utils.errors import DamagedFileError as DamagedFileError
from quaterion_models.utils.errors import UnsafeFileError as UnsafeFileError
from quaterion_models.utils.errors import WrongClassError as WrongClassError
from quaterion_models.utils.trust import is_loading_trusted as is_loading_trusted
from quaterion_models.utils.trust import trusted_loading as trusted_loading

if TYPE_CHECKING:
    from quaterion_models.utils.tensors import move_to_device as move_to_device

__all__ = [
    "ConfigFile",
    "DamagedFileError",
    "UnsafeFileError",
    "WrongClassError",
    "atomic_write",
    "is_loading_trusted",
    "move_to_device",
    "restore_class",
    "save_class_import",
    "trusted_loading",
]


def __getattr__(name: str) -> Any:
    if name == "move_to_device":
        from quaterion_models.utils.tensors import move_to_device

        return move_to_device
    raise AttributeError(f"module 'quaterion_models.utils' has no attribute {name!r}")
