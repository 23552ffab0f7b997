"""Gradient cache: full-batch gradients of any loss with the memory of one mini-batch.

Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup".
A training step with :class:`GradientCacheConfig` runs in two passes:

1. *Forward* (in ``training_step``): the model encodes the batch mini-batch by mini-batch
   without keeping activations (``no_grad``), recording the random-number state before each
   mini-batch. The joined embeddings leave a custom autograd function whose inputs are the
   trainable parameters of the step; the loss (with XBM and cross-rank gathering as
   configured) is computed once over them, an ordinary graph from the embeddings to the
   loss.
2. *Backward* (when Lightning back-propagates the returned loss): autograd back-propagates
   the loss into its own parameters (and any other leaf it reads) and into the embeddings;
   the function then re-encodes each mini-batch with gradients on, from the same random
   state, buffers and autocast settings, and back-propagates that mini-batch's slice of the
   embedding gradient. The summed parameter gradients are handed to autograd as the
   gradients of the function's inputs (every trainable parameter of the step), so every
   parameter receives exactly one gradient per step: optimisers, clipping, accumulation,
   AMP loss scaling and DDP's gradient reduction work unchanged.

The re-encoding reads the model's parameters through aliases (the same storage, swapped in
with ``torch.func.functional_call``, each parameter under its first name; a layer shared by
two encoders is one module, swapped once), so the gradient hooks registered on the
parameters run once per step, on the summed gradient, as in plain training.

Tensors the re-encoding reaches that require grad without being parameters of the step (a
leaf kept as a plain attribute, a tensor captured from outside, a parameter of a module that
is not a sub-module) are found in each re-encoded graph (:mod:`quaterion.train.graph_leaves`)
and receive their summed gradient at the end of the function's backward, accumulated by
autograd into their ``.grad``, as plain training gives them. Once a re-encoded mini-batch
reaches such a tensor (or a parameter by a plain reference), it is encoded again with those
read through aliases as well (:class:`~quaterion.train.leaf_aliases.LeafAliases`), and so
are the rest of the step's mini-batches: their ``register_hook`` hooks run once, on the
sum. A model without any trainable parameter is encoded with
gradients on in the first pass to find such tensors (none: no second pass at all).
"""

import contextlib
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.func import functional_call

from quaterion.deferred_checks import LAG, DeferredChecks
from quaterion.train.gradient_cache_ranks import check_equal_passes
from quaterion.train.graph_leaves import reached_leaves
from quaterion.train.leaf_aliases import LeafAliases
from quaterion.train.mini_batches import batch_size_of, iter_mini_batches

_AUTOCAST_DEVICES = ("cpu", "cuda")

#: Largest relative difference (L2 norm of the difference over that of the first pass) a
#: re-encoded mini-batch may show against its first pass: an exact replay shows 0, kernels
#: that differ between the ``no_grad`` and the gradient pass (e.g. attention backends under
#: autocast) about 1e-3; randomness the cache does not replay, far more.
REPLAY_RTOL = 1e-2


@dataclass(frozen=True)
class GradientCacheConfig:
    """Settings returned by ``TrainableModel.configure_gradient_cache``.

    Args:
        mini_batch_size: records encoded at once; memory grows with this, not with the
            loader's batch size. A positive ``int``.

    Raises:
        TypeError: ``mini_batch_size`` is not an integer (a ``bool`` included; a numpy
            integer is taken as its ``int``).
        ValueError: ``mini_batch_size`` is not positive.
    """

    mini_batch_size: int

    def __post_init__(self) -> None:
        size = self.mini_batch_size
        if isinstance(size, numbers.Integral) and not isinstance(size, bool):
            size = int(size)  # e.g. a numpy integer
            object.__setattr__(self, "mini_batch_size", size)
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(
                f"GradientCacheConfig.mini_batch_size must be a positive int, got "
                f"{type(size).__name__} {size!r}; pass e.g. GradientCacheConfig(mini_batch_size=32)"
            )
        if size <= 0:
            raise ValueError(
                f"GradientCacheConfig.mini_batch_size must be a positive int, got {size}; "
                "pass the number of records to encode at once, e.g. 32"
            )


class _Replay:
    """Random state and autocast settings of one mini-batch, to run it again identically."""

    def __init__(self, device: torch.device):
        self.cpu_state = torch.get_rng_state()
        self.cuda_device = device if device.type == "cuda" else None
        self.cuda_state = torch.cuda.get_rng_state(device) if self.cuda_device is not None else None

    def run(self, fn: Callable[[], Tensor]) -> Tensor:
        devices = [self.cuda_device] if self.cuda_device is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu_state)
            if self.cuda_device is not None:
                torch.cuda.set_rng_state(self.cuda_state, self.cuda_device)
            return fn()


def _autocast_settings() -> List[Tuple[str, bool, torch.dtype]]:
    devices = [d for d in _AUTOCAST_DEVICES if d == "cpu" or torch.cuda.is_available()]
    return [(d, torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)) for d in devices]


class _StepState:
    """What the backward pass needs: the inputs, their replays and the starting buffers.

    ``params``: the function's inputs, whose gradients it returns; leaves reached beyond
    them are collected in ``extras`` and receive theirs through autograd at the end."""

    def __init__(
        self,
        model: nn.Module,
        mini_batches: List[Tuple[int, int, dict, _Replay]],
        params: Sequence[Tensor],
        autocast: List[Tuple[str, bool, torch.dtype]],
        buffers: Dict[str, Tensor],
        first_pass: Optional[List[Tensor]] = None,
        checks: Optional[DeferredChecks] = None,
    ):
        self.model = model
        self.buffers = buffers
        self.first_pass = first_pass
        self.checks = checks
        self.mini_batches: Optional[List[Tuple[int, int, dict, _Replay]]] = mini_batches
        self.params = list(params)
        self.known = {id(param) for param in self.params}  # params and extras found
        self.extras: List[Tensor] = []
        # the model's own parameters among them, re-encoded through aliases (see _reencode)
        position = {id(param): index for index, param in enumerate(self.params)}
        self.aliased = [
            (name, position[id(param)])
            for name, param in model.named_parameters()
            if id(param) in position
        ]
        self.autocast = autocast

    def backward(self, embedding_grad: Tensor) -> List[Optional[Tensor]]:
        if self.mini_batches is None:
            raise RuntimeError(
                "gradient cache: the step's loss was back-propagated twice; the cached "
                "activations are freed after the first backward (do not use retain_graph)"
            )
        mini_batches, self.mini_batches = self.mini_batches, None
        grads: List[Optional[Tensor]] = [None] * len(self.params)
        # the re-encoding starts from the buffers the first pass started from (a forward
        # may read what it updates, e.g. a step counter), and buffers (e.g. batch-norm
        # statistics) end with the values of the first pass
        first_pass = _clone_buffers(self.model)
        _copy_buffers(self.model, self.buffers)
        owned: set = set()
        differences = []
        swap = False  # whether the re-encoding reads the other leaves through aliases too
        for index, (start, stop, features, replay) in enumerate(mini_batches):
            before = None if swap else _clone_buffers(self.model)
            part, aliases, swapped = self._reencode(features, replay, swap)
            if not swap and reached_leaves(part, {id(alias) for alias in aliases}):
                # it reads a leaf beyond the aliases (a parameter by another path, a tensor
                # outside the model): encode again reading it through an alias too, so its
                # hooks run once, on the sum (see LeafAliases)
                swap = True
                _copy_buffers(self.model, before)
                part, aliases, swapped = self._reencode(features, replay, swap)
            if self.first_pass is not None:
                differences.append(_relative_difference(part, self.first_pass[index]))
            self._accumulate(grads, owned, part, embedding_grad[start:stop], aliases, swapped, swap)
        _copy_buffers(self.model, first_pass)
        self.buffers, self.first_pass = {}, None
        if differences and self.checks is not None:
            _record_replay(self.checks, torch.stack(differences), mini_batches)
        count = len(self.params)
        self._give_extras(grads[count:])
        return grads[:count]

    def _give_extras(self, grads: List[Optional[Tensor]]) -> None:
        """Accumulate the summed gradients of the leaves outside ``params`` (one autograd
        call: each leaf's ``.grad`` and post-accumulate hooks see one gradient per step)."""
        leaves = [leaf for leaf, grad in zip(self.extras, grads) if grad is not None]
        given = [grad for grad in grads if grad is not None]
        self.extras = []
        if leaves:
            torch.autograd.backward(leaves, given)

    def _reencode(
        self, features: dict, replay: _Replay, swap: bool
    ) -> Tuple[Tensor, List[Tensor], List[Tuple[Tensor, Tensor]]]:
        """The mini-batch encoded again, with the model's parameters swapped for aliases
        (same storage, new leaves, one per parameter in ``aliased`` order): gradients
        taken per mini-batch do not run the hooks registered on the parameters, which run
        once, on the summed gradient the function returns, as in plain training. With
        ``swap`` every other leaf it reads is read through an alias as well; the
        ``(leaf, alias)`` pairs of those come third."""
        params = dict(self.model.named_parameters())
        aliases = {name: nn.Parameter(params[name].detach()) for name, _ in self.aliased}
        others = LeafAliases({id(alias) for alias in aliases.values()}) if swap else None

        def encode() -> Tensor:
            with torch.enable_grad(), others or contextlib.nullcontext():
                # tie_weights=False: torch's untying leaves an alias in a module reached by
                # two paths; a parameter tied between two modules is swapped under its first
                # name, the other reads it directly (read through LeafAliases, see backward)
                return functional_call(self.model, aliases, (features,), tie_weights=False)

        for device, enabled, dtype in self.autocast:
            encode = _under_autocast(encode, device, enabled, dtype)
        part = replay.run(encode)
        return part, list(aliases.values()), others.pairs if others is not None else []

    def _accumulate(
        self,
        grads: List[Optional[Tensor]],
        owned: set,
        part: Tensor,
        part_grad: Tensor,
        aliases: List[Tensor],
        swapped: List[Tuple[Tensor, Tensor]],
        walk: bool,
    ) -> None:
        """Add one mini-batch's parameter gradients into ``grads``: those of ``params``
        (through their ``aliases``, and directly where a module reads a parameter by another
        path) and of the leaves beyond them (``swapped``: ``(leaf, alias)`` pairs of the
        leaves read through aliases, see :meth:`_reencode`). ``walk``: look for leaves it
        reads directly (``False`` where the caller found none).

        The second mini-batch reaching a parameter allocates its accumulator (``owned``: the
        indices whose tensor this function created; the first gradient autograd returns may
        alias another tensor); later mini-batches add into it in place, so a step allocates
        each parameter's gradient about twice, not once per mini-batch.
        """
        if not part.requires_grad:
            return
        read = {id(alias) for alias in aliases} | {id(alias) for _, alias in swapped}
        extras = reached_leaves(part, self.known | read) if walk else []
        extras += [leaf for leaf, _ in swapped if id(leaf) not in self.known]
        self.known.update(id(leaf) for leaf in extras)
        self.extras += extras
        grads += [None] * len(extras)
        targets = self.params + self.extras
        position = {id(target): index for index, target in enumerate(targets)}
        # each alias adds into the target it stands for
        into = [index for _, index in self.aliased] + [position[id(leaf)] for leaf, _ in swapped]
        targets += aliases + [alias for _, alias in swapped]
        found = list(
            torch.autograd.grad(part, targets, part_grad.to(part.dtype), allow_unused=True)
        )
        for index, grad in zip(into, found[len(grads) :]):
            if grad is not None:
                found[index] = grad if found[index] is None else found[index] + grad
        for index, grad in enumerate(found[: len(grads)]):
            if grad is None:
                continue
            if grads[index] is None:
                grads[index] = grad
            elif index in owned:
                grads[index].add_(grad)
            else:
                grads[index] = grads[index] + grad
                owned.add(index)


def _clone_buffers(model: nn.Module) -> Dict[str, Tensor]:
    return {name: buffer.detach().clone() for name, buffer in model.named_buffers()}


def _copy_buffers(model: nn.Module, values: Dict[str, Tensor]) -> None:
    """Write ``values`` into the model's buffers of the same names (the others are kept)."""
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name in values:
                buffer.copy_(values[name])


def _check_rows(part: Tensor, start: int, stop: int) -> Tensor:
    """The embeddings of records ``start:stop``: one row per record, or a clear error."""
    if part.dim() == 0 or part.shape[0] != stop - start:
        rows = part.shape[0] if part.dim() else "a 0-d tensor, not"
        raise ValueError(
            f"gradient cache: the model returned {rows} embeddings "
            f"for the {stop - start} records {start}:{stop} of a mini-batch; every encoder "
            "must return one row per record of its input (an encoder that does not depend on "
            "its input's rows, or a collate whose output is not cut by record, breaks this)"
        )
    return part


def _relative_difference(part: Tensor, first: Tensor) -> Tensor:
    """``|part - first| / |first|`` (L2 norms, float32, on the device; 0 for a zero
    ``first`` equal to ``part``)."""
    part, first = part.detach().float(), first.float()
    tiny = torch.finfo(torch.float32).tiny
    return torch.linalg.vector_norm(part - first) / torch.linalg.vector_norm(first).clamp_min(tiny)


def _record_replay(
    checks: DeferredChecks, differences: Tensor, mini_batches: List[Tuple[int, int, dict, Any]]
) -> None:
    """Queue the verdict "every re-encoded mini-batch equals its first pass" (read late)."""
    largest = differences.max()  # max and argmax: indexing by a tensor would read it
    ok = ~(largest > REPLAY_RTOL)  # NaN (NaN embeddings) is the guard's business
    verdict = torch.stack([ok.double(), largest.double(), differences.argmax().double()])
    rows = [(start, stop) for start, stop, *_ in mini_batches]

    def error(call: int, values: list) -> RuntimeError:
        start, stop = rows[int(values[2])]
        return RuntimeError(
            f"gradient cache: in training step {call} (read {LAG} steps later), re-encoding "
            f"records {start}..{stop - 1} gave embeddings that differ from the first pass by "
            f"{values[1]:.3g} (relative L2; at most {REPLAY_RTOL:g} allowed), so that step's "
            "gradients are not the full-batch gradients. The model draws random numbers "
            "the cache does not replay (a layer with its own torch.Generator, numpy or "
            "Python random) or changes between the passes: draw from torch's global "
            "generator, turn that randomness off while training, or return None from "
            "configure_gradient_cache()"
        )

    checks.record(verdict, error)


def _under_autocast(
    fn: Callable[[], Tensor], device: str, enabled: bool, dtype: torch.dtype
) -> Callable[[], Tensor]:
    def wrapped() -> Tensor:
        with torch.autocast(device, dtype=dtype, enabled=enabled):
            return fn()

    return wrapped


class _CachedGradient(torch.autograd.Function):
    """Forward: the joined embeddings of the first pass. Backward: the step parameters'
    gradients from the re-encoded mini-batches (see module doc)."""

    @staticmethod
    def forward(ctx: Any, state: _StepState, parts: List[Tensor], *params: Tensor) -> Tensor:
        ctx.state = state
        return torch.cat(parts, dim=0)  # a new tensor: the loss may work on it in place

    @staticmethod
    @once_differentiable  # the re-encoding's gradients carry no graph of their own
    def backward(ctx: Any, embedding_grad: Tensor) -> Tuple[Optional[Tensor], ...]:
        return (None, None, *ctx.state.backward(embedding_grad))


def cached_gradient_step(
    model: nn.Module,
    features: Mapping[str, Any],
    compute_loss: Callable[[Tensor], Tensor],
    params: Sequence[Tensor],
    config: GradientCacheConfig,
    device: torch.device,
    checks: Optional[DeferredChecks] = None,
) -> Tuple[Tensor, Tensor]:
    """Encode ``features`` in mini-batches, compute the loss once, defer the encoder gradients.

    Args:
        model: the ``SimilarityModel`` (encoders and head).
        features: the model input ``{"data": ..., "meta": ...}``.
        compute_loss: full-batch embeddings -> scalar loss (XBM term included).
        params: every parameter of the step (model and loss); those requiring grad get
            their gradient through the function (the loss's own also through its graph).
        config: the gradient-cache settings.
        device: the module's device (its CUDA random state is replayed).
        checks: where the backward pass queues its verdict that every re-encoded
            mini-batch equals its first pass (within :data:`REPLAY_RTOL`); a failed one
            is raised by this function :data:`~quaterion.deferred_checks.LAG` calls later
            (no host sync), or by ``checks.raise_all()``. ``None``: not checked.

    Returns:
        ``(embeddings, loss)``: the joined embeddings and the loss, whose backward fills the
        gradients of ``params`` and of any other leaf the loss or the model reads, as plain
        training would.
        A batch of at most ``config.mini_batch_size`` records takes one plain step instead
        (``model(features)`` with gradients on, then the loss): the same result in one pass.
    """
    if checks is not None:
        checks.raise_late()
    size = batch_size_of(features)
    check_equal_passes(model, size, config.mini_batch_size)
    if size <= config.mini_batch_size:
        # one mini-batch: a plain step has the same gradient, random draws and memory,
        # without the second pass
        embeddings = model(features)
        return embeddings, compute_loss(embeddings)
    # every trainable parameter of the step (model, loss, others) is an input of the
    # function, so each gets one gradient; a model without any trainable parameter is
    # encoded with gradients on to find the leaves it reads: none, no second pass
    inputs = [param for param in params if param.requires_grad]
    in_model = {id(param) for param in model.parameters()}
    probe = not any(id(param) in in_model for param in inputs)
    reached: List[Tensor] = []
    mini_batches, parts = [], []
    buffers = _clone_buffers(model)  # the re-encoding starts from them (see _StepState)
    for start, stop, mini_features in iter_mini_batches(features, config.mini_batch_size):
        replay = _Replay(device)
        with torch.set_grad_enabled(probe):
            part = _check_rows(model(mini_features), start, stop)
        if probe:
            reached += reached_leaves(part, {id(leaf) for leaf in reached})
            part = part.detach()
        parts.append(part)
        mini_batches.append((start, stop, mini_features, replay))
    if probe:
        known = {id(param) for param in inputs}
        inputs = inputs + [leaf for leaf in reached if id(leaf) not in known] if reached else []
    if inputs:
        autocast = _autocast_settings()
        state = _StepState(model, mini_batches, inputs, autocast, buffers, parts, checks)
        embeddings = _CachedGradient.apply(state, parts, *inputs)
    else:
        embeddings = torch.cat(parts, dim=0)
    return embeddings, compute_loss(embeddings)
