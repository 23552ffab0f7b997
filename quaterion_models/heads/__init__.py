"""Heads: trainable layers on top of the concatenated encoder outputs."""

from quaterion_models.heads.empty_head import EmptyHead as EmptyHead
from quaterion_models.heads.encoder_head import EncoderHead as EncoderHead
from quaterion_models.heads.gated_head import GatedHead as GatedHead
from quaterion_models.heads.sequential_head import SequentialHead as SequentialHead
from quaterion_models.heads.skip_connection_head import SkipConnectionHead as SkipConnectionHead
from quaterion_models.heads.softmax_head import SoftmaxEmbeddingsHead as SoftmaxEmbeddingsHead
from quaterion_models.heads.stacked_projection_head import (
    StackedProjectionHead as StackedProjectionHead,
)
from quaterion_models.heads.switch_head import SwitchHead as SwitchHead
from quaterion_models.heads.widening_head import WideningHead as WideningHead

__all__ = [
    "EmptyHead",
    "EncoderHead",
    "GatedHead",
    "SequentialHead",
    "SkipConnectionHead",
    "SoftmaxEmbeddingsHead",
    "StackedProjectionHead",
    "SwitchHead",
    "WideningHead",
]
