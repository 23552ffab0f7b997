"""Small importable encoders used by the quaterion_models tests (saved models record this module)."""

import json
import os
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from quaterion_models.encoders import Encoder, SwitchEncoder
from quaterion_models.utils import is_loading_trusted


def identity_collate(batch: list[Any]) -> list[Any]:
    """Keep raw records as a list (picklable module function)."""
    return batch


class ToyEncoder(Encoder):
    """Base of the toy encoders: ``size`` wide, trainable if ``is_trainable``.

    ``config`` holds the constructor's arguments: ``save`` writes it to ``config.json`` (and the
    parameters, if any, to ``weights.pt``); ``load`` calls the constructor with it again.
    """

    def __init__(self, size: int, is_trainable: bool, config: dict[str, Any]):
        super().__init__()
        self.size = size
        self.is_trainable = is_trainable
        self.config = config

    trainable = property(lambda self: self.is_trainable)
    embedding_size = property(lambda self: self.size)

    def save(self, output_path: str) -> None:
        with open(os.path.join(output_path, "config.json"), "w") as file:
            json.dump(self.config, file)
        if self.state_dict():
            torch.save(self.state_dict(), os.path.join(output_path, "weights.pt"))

    @classmethod
    def load(cls, input_path: str) -> "ToyEncoder":
        with open(os.path.join(input_path, "config.json")) as file:
            encoder = cls(**json.load(file))
        weights = os.path.join(input_path, "weights.pt")
        if os.path.exists(weights):
            encoder.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return encoder


class StackEncoder(ToyEncoder):
    """Identity encoder of width ``size``; the default collate stacks tensors."""

    def __init__(self, size: int = 5, is_trainable: bool = False):
        super().__init__(size, is_trainable, {"size": size, "is_trainable": is_trainable})

    def forward(self, batch: Tensor) -> Tensor:
        return batch


class LinearEncoder(ToyEncoder):
    """``Linear(size_in, size_out)`` encoder with real parameters (saved as a state dict)."""

    def __init__(self, size_in: int = 5, size_out: int = 4, is_trainable: bool = True):
        config = {"size_in": size_in, "size_out": size_out, "is_trainable": is_trainable}
        super().__init__(size_out, is_trainable, config)
        self.linear = nn.Linear(size_in, size_out)

    def forward(self, batch: Tensor) -> Tensor:
        return self.linear(batch)


class LambdaEncoder(StackEncoder):
    """Holds an unpicklable lambda: the model's collate fn must still pickle."""

    def __init__(self, size: int = 5):
        super().__init__(size)
        self.fn = lambda x: x


class ConstantEncoder(ToyEncoder):
    """Maps every raw record to a row filled with ``value`` (width ``size``)."""

    def __init__(self, value: float, size: int = 3):
        super().__init__(size, False, {"value": value, "size": size})
        self.value = value

    def get_collate_fn(self):
        return identity_collate

    def forward(self, batch: list[Any]) -> Tensor:
        return torch.full((len(batch), self.size), float(self.value))


class ZerosOnesSwitch(SwitchEncoder):
    """Records ``"zeros"`` go to option ``a``, anything else to option ``b``."""

    @classmethod
    def encoder_selection(cls, record: Any) -> str:
        return "a" if record == "zeros" else "b"


class NotPersistableEncoder(Encoder):
    """Implements everything but save/load."""

    @property
    def trainable(self) -> bool:
        return False

    @property
    def embedding_size(self) -> int:
        return 5

    def forward(self, batch: Tensor) -> Tensor:
        return batch


class FailingSaveEncoder(StackEncoder):
    """Writes part of its files, then raises: simulates a crash in the middle of a save."""

    def save(self, output_path: str) -> None:
        super().save(output_path)
        raise OSError("disk full (simulated) while saving FailingSaveEncoder")


class Outer:
    """Holds a nested encoder class to test dotted qualnames."""

    class InnerEncoder(StackEncoder):
        pass


class ScaleLayer(nn.Module):
    """A custom layer (outside torch.nn): a SequentialHead holding it needs trusted=True."""

    def __init__(self, factor: float = 2.0):
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor


class MisreportingEncoder(StackEncoder):
    """Identity of width ``size`` whose ``embedding_size`` claims ``claimed``; counts reads."""

    def __init__(self, size: int = 5, claimed: int = 4):
        super().__init__(size)
        self.claimed = claimed
        self.size_reads = 0

    @property
    def embedding_size(self) -> int:
        self.size_reads += 1
        return self.claimed


class FirstRowsEncoder(StackEncoder):
    """Identity that drops the last record of every batch (wrong number of rows)."""

    def forward(self, batch: Tensor) -> Tensor:
        return batch[:-1]


class TrustRecordingEncoder(StackEncoder):
    """Records ``is_loading_trusted()`` as seen by its ``load`` (the hook for custom encoders)."""

    seen: ClassVar[list[bool]] = []

    @classmethod
    def load(cls, input_path: str) -> "TrustRecordingEncoder":
        cls.seen.append(is_loading_trusted())
        return super().load(input_path)
