"""Models, batches and the plain reference step shared by the gradient-cache tests."""

import contextlib
from typing import Callable, Dict, Optional, Tuple

import pytorch_lightning as pl
import torch
from torch import nn

from quaterion import TrainableModel
from quaterion.dataset import (
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
    SimilarityGroupSample,
    SimilarityPairSample,
)
from quaterion.loss import ContrastiveLoss
from quaterion.train import GradientCacheConfig
from quaterion_models.encoders import SwitchEncoder
from quaterion_models.heads import GatedHead
from tests.quaterion.distributed._gather_cases import EMB_DIM, GROUP_LOSSES, IN_DIM
from tests.quaterion.distributed._gather_cases import NUM_GROUPS as GROUPS
from tests.quaterion.distributed._gather_cases import PAIR_LOSSES as _GATHERED_PAIR_LOSSES
from tests.quaterion_models.toy_encoders import ToyEncoder

# The gathered-negatives table (every loss built with gather_across_ranks=True, which changes
# nothing without a process group) plus the pair loss that cannot gather.
PAIR_LOSSES: Dict[str, Callable[[], nn.Module]] = {
    "contrastive": ContrastiveLoss,
    **_GATHERED_PAIR_LOSSES,
}
CASES = [*GROUP_LOSSES, *PAIR_LOSSES]


class DropoutEncoder(ToyEncoder):
    """Trainable ``Linear -> Dropout -> tanh -> Linear`` in ``dtype`` (dropout off by default)."""

    def __init__(
        self, dtype: str = "float32", dropout: float = 0.0, seed: int = 3, trainable: bool = True
    ):
        config = {"dtype": dtype, "dropout": dropout, "seed": seed, "trainable": trainable}
        super().__init__(EMB_DIM, trainable, config)
        torch.manual_seed(seed)
        self.dtype = getattr(torch, dtype)
        self.first = nn.Linear(IN_DIM, 8, dtype=self.dtype)
        self.dropout = nn.Dropout(dropout)
        self.second = nn.Linear(8, EMB_DIM, dtype=self.dtype)

    def get_collate_fn(self):
        return self.collate

    def collate(self, batch):
        return torch.stack([torch.as_tensor(x) for x in batch]).to(self.dtype)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.second(torch.tanh(self.dropout(self.first(batch))))


class CachedModel(TrainableModel):
    """``encoders`` -> gated head -> ``loss``, with an optional gradient cache and XBM."""

    def __init__(self, encoders, loss, mini_batch_size=None, xbm=None, cache=None, lr=0.0):
        self._encoders, self._loss_holder, self._xbm = encoders, [loss], xbm
        self._mini, self._cache_cfg, self._lr = mini_batch_size, cache, lr
        super().__init__()

    def configure_encoders(self):
        return self._encoders

    def configure_head(self, input_embedding_size: int):
        torch.manual_seed(11)
        dtype = next(iter(self._encoders.values())).parameters().__next__().dtype
        return GatedHead(input_embedding_size).to(dtype)

    def configure_loss(self):
        return self._loss_holder[0]

    def configure_caches(self):
        return self._cache_cfg

    def configure_xbm(self):
        return self._xbm

    def configure_gradient_cache(self) -> Optional[GradientCacheConfig]:
        return None if self._mini is None else GradientCacheConfig(mini_batch_size=self._mini)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self._lr)


def group_samples(n: int = 22, seed: int = 0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    data = torch.randn(n, IN_DIM, generator=generator, dtype=dtype)
    return [SimilarityGroupSample(obj=data[i], group=(i * 7) % GROUPS) for i in range(n)]


def pair_samples(n: int = 9, seed: int = 1, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    data = torch.randn(2 * n, IN_DIM, generator=generator, dtype=dtype)
    return [
        SimilarityPairSample(obj_a=data[i], obj_b=data[n + i], score=1.0, subgroup=i % 3)
        for i in range(n)
    ]


def loader_for(case: str, dtype=torch.float32, **kwargs):
    if case in PAIR_LOSSES:
        return PairsSimilarityDataLoader(pair_samples(dtype=dtype), batch_size=9, **kwargs)
    return GroupSimilarityDataLoader(group_samples(dtype=dtype), batch_size=22, **kwargs)


def loss_for(case: str, dtype: torch.dtype) -> nn.Module:
    factory = GROUP_LOSSES.get(case) or PAIR_LOSSES[case]
    return factory().to(dtype)


def first_batch(model: TrainableModel, loader) -> Tuple[dict, dict]:
    model.setup_dataloader(loader)
    return next(iter(loader))


def attach_trainer(model: TrainableModel) -> None:
    """A trainer that logs nothing, so that steps can be called directly."""
    model.trainer = pl.Trainer(barebones=True, accelerator="cpu", devices=1, max_steps=1)


def cached_step(model: TrainableModel, batch) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """``training_step`` + backward: the loss and every parameter's gradient."""
    model.zero_grad(set_to_none=True)
    loss = model.training_step(batch, 0)
    loss.backward()
    return loss.detach(), grads_of(model)


def grads_of(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def sequential_step(model: TrainableModel, batch, mini: int, forward_context=None):
    """Reference: mini-batches encoded in sequence *keeping* the graph, loss, backward.

    ``forward_context()`` (e.g. an autocast block) wraps each mini-batch's forward and the
    loss, not the backward."""
    features, targets = batch
    model.zero_grad(set_to_none=True)
    data, size = features["data"]["default"], len(features["meta"])

    def rows(start):  # a tensor, or a tokenizer's dict of tensors
        if isinstance(data, torch.Tensor):
            return data[start : start + mini]
        return {key: value[start : start + mini] for key, value in data.items()}

    context = forward_context or contextlib.nullcontext
    parts = []
    for s in range(0, size, mini):
        with context():
            parts.append(
                model.model({"data": {"default": rows(s)}, "meta": features["meta"][s : s + mini]})
            )
    with context():
        loss = model.loss(embeddings=torch.cat(parts), **targets)
    loss.backward()
    return loss.detach(), grads_of(model)


def assert_same_grads(got: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor], rtol: float):
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        assert grad.abs().sum() > 0, f"zero reference gradient for {name}"
        torch.testing.assert_close(got[name], grad, rtol=rtol, atol=rtol * 1e-2, msg=name)


class Switch(SwitchEncoder):
    """Records whose first feature is positive go to option ``pos``, the others to ``neg``."""

    @classmethod
    def encoder_selection(cls, record) -> str:
        return "pos" if float(record[0]) > 0 else "neg"


OUTSIDE = {}  # tensors captured by LeafEncoder, made afresh by fresh_shift


class LeafEncoder(DropoutEncoder):
    """Scales by a plain-attribute leaf, shifts by a captured tensor and mixes through a
    linear layer that is not a sub-module (kept in a list)."""

    def __init__(self, dtype: str):
        super().__init__(dtype)
        torch.manual_seed(21)
        kind = getattr(torch, dtype)
        self.scale = torch.full((8,), 1.5, dtype=kind, requires_grad=True)  # not registered
        self.hidden = [nn.Linear(8, 8, dtype=kind)]  # not a sub-module

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.first(batch)) * self.scale + OUTSIDE["shift"]
        return self.second(torch.tanh(self.hidden[0](hidden)))


def outside_leaves(model):
    """The tensors of a ``LeafEncoder`` model that require grad outside its parameters."""
    encoder = model.model.encoders["default"]
    return {
        "scale": encoder.scale,
        "shift": OUTSIDE["shift"],
        "hidden.weight": encoder.hidden[0].weight,
        "hidden.bias": encoder.hidden[0].bias,
    }


def fresh_shift(dtype):
    """A new captured ``shift`` leaf (no gradient yet)."""
    OUTSIDE["shift"] = torch.linspace(-0.3, 0.4, 8, dtype=dtype).requires_grad_()


def leaf_grads(model):
    """The gradients of the leaves outside the parameters (all present), cloned."""
    grads = {name: leaf.grad for name, leaf in outside_leaves(model).items()}
    assert all(grad is not None for grad in grads.values()), grads
    return {name: grad.clone() for name, grad in grads.items()}
