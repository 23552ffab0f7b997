"""Helpers: moving nested tensors between devices and class import records."""

from quaterion_models.utils.classes import restore_class as restore_class
from quaterion_models.utils.classes import save_class_import as save_class_import
from quaterion_models.utils.tensors import move_to_device as move_to_device

__all__ = ["move_to_device", "restore_class", "save_class_import"]
