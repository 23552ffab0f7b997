"""Accumulators: keep embeddings and targets across batches for ``evaluate``."""

from quaterion.eval.accumulators.accumulator import Accumulator
from quaterion.eval.accumulators.group_accumulator import GroupAccumulator
from quaterion.eval.accumulators.pair_accumulator import PairAccumulator

__all__ = ["Accumulator", "GroupAccumulator", "PairAccumulator"]
