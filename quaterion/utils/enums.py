"""String enums shared by training and evaluation."""

from enum import StrEnum


class TrainStage(StrEnum):
    """Stage of a training run; formats, prints and compares as its value."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"
