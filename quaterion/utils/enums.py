"""String enums shared by training and evaluation."""

from enum import Enum


class TrainStage(str, Enum):
    """Stage of a training run; formats, prints and compares as its value."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"

    def __str__(self) -> str:
        return self.value

    def __format__(self, format_spec: str) -> str:
        return format(self.value, format_spec)
