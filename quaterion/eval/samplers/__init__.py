"""Samplers: encode a dataset once, then draw query rows against every item."""

from quaterion.eval.samplers.base_sampler import BaseSampler
from quaterion.eval.samplers.group_sampler import GroupSampler
from quaterion.eval.samplers.pair_sampler import PairSampler

__all__ = ["BaseSampler", "GroupSampler", "PairSampler"]
