"""Multi-process helpers: world size, gathering rows from every rank, rank-0-only sections.

Everything here is a no-op without an initialised ``torch.distributed`` process group of
more than one rank, so single-process code paths are exactly what they were.

Failure contract: a helper that takes a collective never leaves a rank waiting for a
collective another rank will not reach. Errors found on one rank (a failing rank-0-only
section, ranks passing different shapes to :func:`gather_rows`) are agreed on at the
helper's own exchange, and every rank raises: the failing rank its own exception, the
others :class:`RankFailedError` or the same :class:`RankMismatchError`.
An error a rank raises on its own (in its step, a callback, a loader) reaches the others
through :class:`~quaterion.train.callbacks.rank_failure_callback.RankFailureCallback`.
"""

import hashlib
import os
import weakref
from contextlib import contextmanager
from typing import (
    Any,
    Callable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
)

import torch
import torch.distributed as dist
from torch import Tensor

from quaterion.deferred_checks import DeferredChecks
from quaterion._device_gather import HEADER_BYTES, gather_trusted, header_of, unequal_message
from quaterion._gather_plan import AgreedLayout, GatherPlan
from quaterion._row_packing import pack_into, row_bytes, unpack

T = TypeVar("T")


class ErrorOnEveryRank(Exception):
    """Base of the errors that every rank raises together, after the ranks agreed on them.

    :class:`RankFailedError`, the errors of :class:`~quaterion.train.callbacks.guard_callback.GuardCallback`
    and :class:`RankMismatchError` derive from it. A rank stopping with one of them is not
    reported to the other ranks as a new failure (they raise the same error themselves).
    """


class RankFailedError(ErrorOnEveryRank, RuntimeError):
    """Another rank failed; this rank stops too.

    The message names the failing rank(s) and their exception; the full traceback is in the
    failing rank's own output.
    """


class RankMismatchError(ErrorOnEveryRank, ValueError):
    """Ranks passed tensors of different layouts to one collective (every rank raises it)."""


def world_size() -> int:
    """Number of ranks of the default process group; 1 when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def require_one_process(what: str) -> None:
    """Raise ``RuntimeError`` naming ``what`` when a process group of several ranks runs: for
    batch samplers that do not shard their batches (every rank would train on the same
    records)."""
    ranks = world_size()
    if ranks > 1:
        raise RuntimeError(
            f"{what} does not shard its batches across ranks: with {ranks} ranks every rank "
            "would train on the same records. Use it in one process, or a distributed "
            "sampler under DDP."
        )


def global_rank() -> int:
    """Rank of this process in the default process group; 0 when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def is_global_rank_zero() -> bool:
    """Whether this process is global rank 0 (the one that writes shared files).

    The default process group's rank when one is initialised; otherwise the rank the
    launcher put in the environment (``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID``), as
    Lightning reads it, so a process started by ``torchrun`` before its group exists still
    knows it is not rank 0. ``True`` in a plain single process.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    # imported here: the losses import this module and must not pull in Lightning
    from pytorch_lightning.utilities import rank_zero_only

    return rank_zero_only.rank == 0


def barrier() -> None:
    """Wait for every rank (no-op without a process group of more than one rank)."""
    if world_size() > 1:
        dist.barrier()


def gather_objects(obj: Any) -> List[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``all_gather_object``)."""
    if world_size() == 1:
        return [obj]
    out: List[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_from_rank_zero(obj: Any) -> Any:
    """Global rank 0's ``obj`` on every rank (picklable objects; over the host, never the
    device). Every rank must call it; without a process group, returns ``obj``."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_host_group())
    return box[0]


def collective_device() -> torch.device:
    """Where tensors of a collective live: the current CUDA device for NCCL, else CPU."""
    if world_size() > 1 and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------
# Failing together


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@contextmanager
def fail_together(what: str) -> Iterator[None]:
    """Run a block on every rank; if it raises on any rank, every rank raises.

    On leaving the block the ranks exchange one small status flag (an ``all_reduce``, which
    also holds every rank until all have finished the block, like a barrier). A rank whose
    block raised re-raises its own exception; the others raise :class:`RankFailedError`
    naming the failing ranks and their errors. Every rank must enter the block (it is a
    collective); without a process group of more than one rank it does nothing.

    Args:
        what: what the block does, for the error message (e.g. ``"saving the cache"``).
    """
    if world_size() == 1:
        yield
        return
    failure: Optional[BaseException] = None
    try:
        yield
    except BaseException as error:  # noqa: B036 - re-raised below, after the exchange
        failure = error
    flag = torch.tensor([0 if failure is None else 1], dtype=torch.int32)
    flag = flag.to(collective_device())
    dist.all_reduce(flag)
    if int(flag.item()) == 0:  # a host read on purpose: this is the barrier
        return
    reports = gather_objects(None if failure is None else _describe(failure))
    if failure is not None:
        raise failure
    failed = "; ".join(
        f"rank {rank}: {report}" for rank, report in enumerate(reports) if report is not None
    )
    raise RankFailedError(
        f"{what} failed on another rank ({failed}), so rank {global_rank()} stops as well. "
        "See the failing rank's traceback for the cause."
    )


def on_rank_zero_then_wait(function: Callable[[], T]) -> T | None:
    """Run ``function`` on global rank 0 only, then hold every rank until it is done.

    Returns ``function()``'s result on rank 0 and ``None`` on the other ranks. If
    ``function`` raises, rank 0 re-raises it and every other rank raises
    :class:`RankFailedError` at once (no rank waits for the collective timeout). Every rank
    must call it. Without a process group, simply returns ``function()``.
    """
    if world_size() == 1:
        return function()
    result = None
    name = getattr(function, "__qualname__", type(function).__name__)
    with fail_together(f"on_rank_zero_then_wait({name})"):
        if global_rank() == 0:
            result = function()
    return result


def ints_of_every_rank(value: int) -> List[int]:
    """Every rank's ``value`` (a Python ``int``) in rank order, on every rank.

    One ``all_gather`` of a CPU integer over the host (the default group when it is gloo,
    else a gloo group made once): nothing waits for a device. Every rank must call it at
    the same point. Without a process group of more than one rank, returns ``[value]``.
    """
    if world_size() == 1:
        return [int(value)]
    return [row[0] for row in _host_int_rows([int(value)], _host_group())]


def _host_int_rows(values: List[int], group: Optional[dist.ProcessGroup]) -> List[List[int]]:
    """Every rank's ``values`` (the same count of Python ints on each), in rank order: one
    ``all_gather`` of a CPU tensor over the host ``group``, so nothing waits for a device."""
    mine = torch.tensor(values, dtype=torch.long)
    parts = [torch.empty_like(mine) for _ in range(world_size())]
    dist.all_gather(parts, mine, group=group)
    return torch.stack(parts).tolist()  # CPU tensors: no device sync


def stack_across_ranks(tensor: Tensor) -> Tensor:
    """Every rank's ``tensor`` stacked in rank order: ``(world_size, *tensor.shape)``.

    For small tensors of the same shape and dtype on every rank (flags, a loss value). One
    ``all_reduce``: for a CUDA tensor under NCCL on its own device, so it is queued like any
    kernel and the host never waits; otherwise on the CPU over gloo (a CUDA tensor under a
    gloo-only group is copied to the host for it). Without a process group, returns
    ``tensor[None]``.
    """
    ranks = world_size()
    if ranks == 1:
        return tensor[None]
    on_device = tensor.device.type == "cuda" and "nccl" in dist.get_backend()
    device = tensor.device if on_device else torch.device("cpu")
    stacked = torch.zeros((ranks, *tensor.shape), dtype=tensor.dtype, device=device)
    stacked[global_rank()] = tensor.to(device)
    dist.all_reduce(stacked, group=None if on_device else _host_group())  # NCCL takes no CPU
    return stacked.to(tensor.device)


# ---------------------------------------------------------------------------------------
# Gathering rows


_META_GROUPS: dict = {}


def _made_in_this_world(key: str) -> bool:
    """Whether what is cached under ``key`` belongs to the current default process group;
    if not, records the current group under ``key`` (the caller then makes it anew).

    Only weak references to process groups are kept: a strong one held here would keep a
    destroyed group's gloo threads alive until interpreter exit, which then aborts the
    process ("terminate called without an active exception").
    """
    world = dist.group.WORLD
    known = _META_GROUPS.get(key)
    if known is not None and known() is world:
        return True
    _META_GROUPS[key] = weakref.ref(world)
    return False


def _host_group() -> Optional[dist.ProcessGroup]:
    """A gloo group over every rank for host-side (CPU) collectives.

    The default group when its backend handles CPU tensors; otherwise (NCCL) a gloo group
    created once, on the first call, which every rank makes at the same point.
    """
    if "gloo" in dist.get_backend():
        return None  # the default group
    if not _made_in_this_world("world"):
        _META_GROUPS["group"] = weakref.ref(dist.new_group(backend="gloo"))
    return _META_GROUPS["group"]()


_Layout = Tuple[str, List[Tuple[torch.dtype, Tuple[int, ...], bool]]]


def _signature(tensors: Sequence[Tensor]) -> Tuple[int, str, Optional[_Layout]]:
    """This rank's rows, a description of everything else that must match across ranks, and
    that layout (``None`` for invalid input)."""
    if not tensors:
        return 0, "0 tensors", ("", [])
    if not all(isinstance(t, Tensor) for t in tensors):
        kinds = [type(t).__name__ for t in tensors]
        return -1, f"the inputs must be tensors, got {kinds}", None
    if any(t.dim() == 0 for t in tensors):
        shapes = _shapes(tensors)
        return -1, f"the inputs need a row dimension, got shapes {shapes}", None
    rows = tensors[0].shape[0]
    if any(t.shape[0] != rows for t in tensors):
        shapes = _shapes(tensors)
        return -1, f"every tensor needs the same number of rows, got shapes {shapes}", None
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        return -1, f"every tensor must be on one device, got {sorted(map(str, devices))}", None
    layout = (
        tensors[0].device.type,
        [(t.dtype, tuple(t.shape[1:]), t.requires_grad) for t in tensors],
    )
    parts = [
        f"shape (rows, {', '.join(map(str, shape))}) {dtype}{' requires_grad' if grad else ''}"
        for dtype, shape, grad in layout[1]
    ]
    return rows, f"{len(tensors)} tensors on {layout[0]}: " + "; ".join(parts), layout


def _fits_empty(empty: Optional[_Layout], agreed: _Layout) -> bool:
    """Whether a rank without rows can take the ``agreed`` layout: only dtypes and trailing
    shapes may differ (the backward collectives follow ``requires_grad``)."""
    if empty is None or empty[0] != agreed[0] or len(empty[1]) != len(agreed[1]):
        return False
    return all(mine[2] == theirs[2] for mine, theirs in zip(empty[1], agreed[1]))


def _shapes(tensors: Sequence[Tensor]) -> List[tuple]:
    return [tuple(t.shape) for t in tensors]


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=7).digest(), "little")


def _agree_on_rows(
    tensors: Sequence[Tensor],
) -> Tuple[List[int], Optional[dist.ProcessGroup], Optional[_Layout], bool]:
    """Exchange rows and layout over the host; every rank raises the same error on a mismatch.

    One ``all_gather`` of two CPU integers per rank; shapes and dtypes are host metadata, so
    nothing waits for the device. Returns the row counts, the host group, the layout of
    the ranks holding rows when this rank holds none and differs from it (else ``None``),
    and whether every rank passed exactly the same layout.
    """
    rows, description, layout = _signature(tensors)
    group = _host_group()
    table = _host_int_rows([rows, _digest(description)], group)
    sizes = [rows for rows, _ in table]
    if min(sizes) >= 0 and len({digest for _, digest in table}) == 1:
        return sizes, group, None, True
    descriptions: List[Any] = [None] * world_size()
    dist.all_gather_object(descriptions, (rows, description, layout), group=group)
    filled = [theirs for n, _, theirs in descriptions if n > 0]
    if min(sizes) >= 0 and filled and all(theirs == filled[0] for theirs in filled):
        # ranks without rows contribute nothing: they may differ in dtype and trailing shape
        if all(_fits_empty(theirs, filled[0]) for n, _, theirs in descriptions if n == 0):
            return sizes, group, (filled[0] if rows == 0 else None), False
    lines = "\n".join(
        f"  rank {rank}: {'(invalid) ' if n < 0 else f'{n} rows, '}{text}"
        for rank, (n, text, _) in enumerate(descriptions)
    )
    raise RankMismatchError(
        "gather_rows: every rank must pass the same number of tensors with the same trailing "
        "shapes, dtypes and requires_grad (only the number of rows may differ), on the same "
        f"kind of device. Got:\n{lines}\nMake every rank build its batch the same way (the "
        "same model, precision and encoders)."
    )


def _gather_checked(
    sizes: List[int], group: Optional[dist.ProcessGroup], tensors: Sequence[Tensor]
) -> Tensor:
    """Every rank's packed rows, after a full check agreed on ``sizes``: one ``all_gather``
    of the rows padded to the longest rank."""
    longest = max(sizes)
    packed = tensors[0].new_zeros((longest, row_bytes(tensors)), dtype=torch.uint8)
    pack_into(packed, tensors)
    parts = [torch.empty_like(packed) for _ in sizes]
    dist.all_gather(parts, packed, group=group)
    if min(sizes) != longest:
        parts = [part[:n] for part, n in zip(parts, sizes)]
    return torch.cat(parts)


# gathers larger than this per rank always take the full check (two collectives, small
# next to the data): a rank that does not fit the expected layout still sends its size
_EXPECTED_MAX_BYTES = 16 * 2**20


def _gather_expected(
    expected: AgreedLayout, group: Optional[dist.ProcessGroup], tensors: Sequence[Tensor]
) -> Optional[Tuple[List[int], Tensor]]:
    """One ``all_gather`` of ``expected.capacity`` rows per rank with each rank's row count
    in the same buffer: ``(sizes, packed rows)``, or ``None`` on every rank when any rank
    could not send the expected layout (different layout, invalid input, more rows).

    The buffer's size depends on ``expected`` only, which is the same on every rank, so the
    collective is well formed whatever a rank passed; the counts are read on the host (the
    buffer is a CPU tensor), so nothing waits for a device.
    """
    rows, description, _ = _signature(tensors)
    same = rows >= 0 and _digest(description) == expected.digest
    fits = header_of(rows, same, expected.capacity) >= 0
    payload = torch.zeros(expected.payload_bytes(HEADER_BYTES), dtype=torch.uint8)
    if fits and rows:
        packed = payload[: expected.capacity * expected.row_bytes]
        pack_into(packed.view(expected.capacity, expected.row_bytes), tensors)
    count = torch.tensor([rows if fits else -1], dtype=torch.int64)
    payload[-HEADER_BYTES:] = count.view(torch.uint8)
    parts = [torch.empty_like(payload) for _ in range(world_size())]
    dist.all_gather(parts, payload, group=group)
    counts = torch.stack([part[-HEADER_BYTES:] for part in parts]).view(torch.int64)
    sizes = counts.reshape(-1).tolist()  # a CPU tensor: no device sync
    if min(sizes) < 0:
        return None
    rows_bytes = [part[: n * expected.row_bytes] for part, n in zip(parts, sizes)]
    return sizes, torch.cat(rows_bytes).reshape(sum(sizes), expected.row_bytes)


def _plan() -> GatherPlan:
    """The :class:`GatherPlan` of the current default process group."""
    if not _made_in_this_world("plan_world"):
        _META_GROUPS["plan"] = GatherPlan()
    return _META_GROUPS["plan"]


class _GatherRows(torch.autograd.Function):
    """Unpacks every rank's gathered rows (bytes) into the tensors, differentiably.

    Backward sums every rank's gradient of the gathered rows (one ``all_reduce`` per tensor
    that requires grad) and hands each rank the slice of its own rows.
    """

    @staticmethod
    def forward(ctx, sizes: List[int], group, gathered: Tensor, *tensors: Tensor):
        ctx.sizes, ctx.group = sizes, group
        outputs = unpack(gathered.to(tensors[0].device), tensors)
        ctx.mark_non_differentiable(
            *[out for out, needed in zip(outputs, ctx.needs_input_grad[3:]) if not needed]
        )
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grads: Optional[Tensor]):
        start = sum(ctx.sizes[: global_rank()])
        stop = start + ctx.sizes[global_rank()]
        inputs = []
        for grad, needed in zip(grads, ctx.needs_input_grad[3:]):
            if not needed:
                inputs.append(None)
                continue
            grad = grad.contiguous()
            dist.all_reduce(grad, group=ctx.group)
            inputs.append(grad[start:stop])
        return (None, None, None, *inputs)


def _device_path(device_type: str) -> bool:
    """Whether layouts of this device type take the device path (no size exchange; see
    :mod:`quaterion._device_gather`): CUDA tensors under NCCL, or every layout while
    the environment variable :data:`FORCE_DEVICE_PATH_ENV` is ``1`` (how the tests run that
    path on CPU over gloo)."""
    if os.environ.get(FORCE_DEVICE_PATH_ENV) == "1":
        return True
    return device_type == "cuda" and "nccl" in dist.get_backend()


#: Set to ``1`` (before the first gather) to send every layout down the device path, CPU
#: tensors over gloo included: how that path is tested and benchmarked without a GPU.
FORCE_DEVICE_PATH_ENV = "QUATERION_FORCE_DEVICE_GATHER"


def _gather_with_check(
    tensors: Sequence[Tensor],
    plan: GatherPlan,
    expected: Optional[AgreedLayout],
    equal_rows: bool,
) -> Tuple[Tuple[Tensor, ...], List[int], Optional[dist.ProcessGroup], Optional[Tensor]]:
    """The full path: exchange row counts and layouts, then gather (two collectives, more
    on a mismatch). Teaches ``plan`` the agreed layout; forgets it on an error."""
    try:
        sizes, host_group, layout, uniform = _agree_on_rows(tensors)  # every rank takes part
        if tensors and equal_rows and len(set(sizes)) > 1 and _device_path(_layout_type(tensors)):
            raise RankMismatchError(unequal_message(sizes))  # every rank saw the same sizes
    except ValueError:
        _start_over()  # every rank raises here: every plan starts over
        raise
    if not tensors:
        plan.learn(None)
        return tuple(tensors), sizes, host_group, None
    if layout is not None:  # this rank holds no rows: take the layout of the others
        tensors = tuple(
            tensor.to(dtype).reshape(0, *shape)
            for tensor, (dtype, shape, _) in zip(tensors, layout[1])
        )
    on_host = tensors[0].device.type == "cpu"
    agreed = None
    if uniform and (on_host or _device_path(_layout_type(tensors))):
        _, description, mine = _signature(tensors)
        digest = _digest(description)
        grown = expected.capacity if expected and expected.digest == digest else 0
        capacity = max(max(sizes), grown)
        agreed = AgreedLayout(digest, row_bytes(tensors), capacity, mine[0], tuple(mine[1]))
        if agreed.payload_bytes(HEADER_BYTES) > _EXPECTED_MAX_BYTES:
            agreed = None  # e.g. a whole cache: a wrong guess would move that much for nothing
    plan.learn(agreed)
    group = host_group if on_host else None
    return tuple(tensors), sizes, group, _gather_checked(sizes, group, tensors)


def _layout_type(tensors: Sequence[Tensor]) -> str:
    """The device type of a call's tensors (``""`` when they are not tensors)."""
    first = tensors[0] if tensors else None
    return first.device.type if isinstance(first, Tensor) else ""


def _checks() -> DeferredChecks:
    """The device-side verdicts of the current default process group's gathers."""
    if not _made_in_this_world("checks_world"):
        _META_GROUPS["checks"] = DeferredChecks()
    return _META_GROUPS["checks"]


def _start_over() -> None:
    """After a :class:`RankMismatchError` (every rank raises it at the same call): forget
    the agreed layouts and the queued device-side verdicts (those of the calls after the
    bad one were poisoned by it), so that a new loop starts clean on every rank."""
    _plan().forget()
    _checks().discard()


def _gather_on_device(
    expected: AgreedLayout, tensors: Sequence[Tensor], padded: bool
) -> Optional[Tuple[Tuple[Tensor, ...], Tensor]]:
    """The device path: one collective, the row counts checked on the device (see
    :mod:`quaterion._device_gather`): ``(outputs, valid)``, or ``None`` on every rank when
    no rank could send the expected layout."""
    rows, description, _ = _signature(tensors)
    same = rows >= 0 and _digest(description) == expected.digest
    header = header_of(rows, same, expected.capacity)
    where = (collective_device(), global_rank(), world_size(), None)
    return gather_trusted(
        expected, tensors, header, where, _checks(), RankMismatchError, padded=padded
    )


def reset_gathers() -> None:
    """Forget the layouts :func:`gather_rows` agreed on and drop its queued device-side
    checks, on this rank. Call it on every rank at the same point (``GuardCallback`` does at
    the start of each training run), so that a new run never reads a verdict left by an
    earlier run that stopped with another error. A no-op without a process group of more
    than one rank."""
    if world_size() > 1:
        _start_over()


def failed_gather_flag() -> Optional[Tensor]:
    """A bool 0-d device tensor, true once a device-side check of :func:`gather_rows`
    (``equal_rows=True``) or :func:`gather_rows_padded` failed since the last
    :func:`reset_gathers` (computed on the device, never read on the host); ``None`` when no
    such check was recorded (one process, or the host path, where errors raise at once).

    ``GuardCallback`` zeroes the gradients of a step while it is true, so no step from a
    failed gather on is applied, even with ``check_finite_loss = False``.
    """
    if world_size() == 1:
        return None
    return _checks().failed


def raise_pending_gather_errors() -> None:
    """Read every queued device-side check of :func:`gather_rows` (``equal_rows=True``)
    and :func:`gather_rows_padded` on the device path, and raise
    :class:`RankMismatchError` if one failed.

    Those checks are read two gather calls after their own; the last calls
    of a loop are read here. Waits for the device: call it once at the end of a loop, on
    every rank (they all raise alike). ``GuardCallback`` calls it when training ends and
    before it raises an error of its own, so a mismatch is reported as its cause, not as
    the NaN it was turned into. A no-op without a process group of more than one rank.
    """
    if world_size() == 1:
        return
    try:
        _checks().raise_all()
    except RankMismatchError:
        _start_over()
        raise


def gather_rows(*tensors: Tensor, equal_rows: bool = False) -> Tuple[Tensor, ...]:
    """Concatenate every rank's rows (dim 0) in rank order, on every rank.

    All ``tensors`` share their first dimension (e.g. embeddings ``(B, d)`` and groups
    ``(B,)``); ranks may hold different ``B`` (unless ``equal_rows``). Everything else (the
    number of tensors, their trailing shapes, dtypes, ``requires_grad``, the device type)
    must match across ranks: otherwise every rank raises the same
    :class:`RankMismatchError` (a ``ValueError``) listing what each rank passed, before any
    rows are used. Only a rank holding no rows may differ in dtypes and trailing shapes: it
    contributes nothing and gets the other ranks' layout.

    For a tensor that requires grad, backward sums, on each rank, the gradients every rank
    computed for that rank's own rows. When every rank computes the same loss of the gathered
    batch, a rank's rows thus get ``world_size x`` their gradient, and DDP's mean over ranks
    turns the parameter gradient into exactly the single-process gradient of the
    concatenated batch.

    Cost per call, tensors of at most 16 MiB per rank: once a layout has been agreed at
    this point of the call sequence, **one** ``all_gather`` of every rank's rows packed
    together, padded to the largest row count agreed for it, with each rank's row count
    (or "cannot send this layout") in the same buffer. CPU tensors: the counts are read on
    the host; when any rank reports a different layout or more rows, every rank falls back
    to the full check; the agreed count shrinks after 8 calls in a row far below it. CUDA
    tensors under NCCL with ``equal_rows=True``: nothing is read; see ``equal_rows``. The
    full check (the first call, larger gathers, and CUDA tensors with
    ``equal_rows=False``): one ``all_gather`` of two integers per rank over the host (a gloo
    group) to agree on sizes and layout, then one ``all_gather`` of the packed rows (padded
    to the longest rank only when sizes differ). In backward, one ``all_reduce`` per tensor
    that requires grad. No device-to-host synchronisation. Memory ``world_size x`` the
    inputs.

    Args:
        tensors: this rank's tensors.
        equal_rows: the caller promises that every rank passes the same number of rows at
            this call (a training batch from a loader with ``drop_last=True`` or a
            ``DistributedSampler``; the losses' gathers pass ``True``). For CUDA tensors
            under NCCL, each rank then takes every rank's rows as its own count, and the
            counts are compared on the device and read a few calls later (at the start of
            the second gather call after it, or by :func:`raise_pending_gather_errors`):
            if they differed, that call's floating outputs are NaN (integer ones are not
            marked; under ``Quaterion.fit`` the non-finite guard does not apply such a
            step) and every rank raises the same
            :class:`RankMismatchError`; a full check that finds unequal counts raises at
            once. On CPU tensors it changes nothing (the counts are free to read there).
            Where ranks may differ, :func:`gather_rows_padded` takes the same single
            collective without the promise (padded rows and a mask of the real ones).

    Returns:
        The tensors, unchanged without a process group of more than one rank.

    Raises:
        ValueError: (also in one process) an input that is not a tensor with a row
            dimension.
    """
    if not isinstance(equal_rows, bool):
        raise TypeError(
            f"gather_rows: equal_rows must be True or False, got {equal_rows!r} "
            f"({type(equal_rows).__name__})."
        )
    if world_size() == 1:
        if not all(isinstance(t, Tensor) and t.dim() > 0 for t in tensors):
            # what a process group would refuse, refused here too
            raise ValueError(f"gather_rows: {_signature(tensors)[1]}.")
        return tensors
    return _gather(tensors, equal_rows=equal_rows, padded=False)[0]


def _gather(
    tensors: Sequence[Tensor], equal_rows: bool, padded: bool
) -> Tuple[Tuple[Tensor, ...], Optional[Tensor]]:
    """Every rank's rows (a process group of more than one rank): ``(outputs, valid)``,
    ``valid`` the device mask of the real rows where the device path padded them (only
    with ``padded``), else ``None`` (compact rows, all real)."""
    plan = _plan()
    try:
        _checks().raise_late()  # a failed device-side verdict of an earlier call
    except RankMismatchError:
        _start_over()
        raise
    expected = plan.expected()  # the same on every rank
    if expected is not None and _device_path(expected.device):
        if equal_rows or padded:
            gathered = _gather_on_device(expected, tensors, padded)
            if gathered is not None:
                plan.confirm(expected, expected.capacity)  # counts unread: never shrinks
                outputs, valid = gathered
                return outputs, (valid if padded else None)
    elif expected is not None:
        gathered = _gather_expected(expected, _host_group(), tensors)
        if gathered is not None:
            sizes, packed = gathered
            plan.confirm(expected, max(sizes))
            return _GatherRows.apply(sizes, _host_group(), packed, *tensors), None
    tensors, sizes, group, packed = _gather_with_check(tensors, plan, expected, equal_rows)
    if packed is None:
        return tuple(tensors), None
    return _GatherRows.apply(sizes, group, packed, *tensors), None


class PaddedRows(NamedTuple):
    """What :func:`gather_rows_padded` returns; unpacks as ``tensors, valid = ...``."""

    #: The gathered tensors, every one with the same rows.
    tensors: Tuple[Tensor, ...]
    #: Bool ``(rows,)`` on the tensors' device: ``True`` for the rows some rank passed,
    #: ``False`` for padding (zeros) that a loss must ignore.
    valid: Tensor


def gather_rows_padded(*tensors: Tensor) -> PaddedRows:
    """Every rank's rows in rank order, each rank's rows possibly padded, with a mask of
    the real ones: the gather of losses whose ranks may hold batches of different sizes.

    Like :func:`gather_rows` (the same layout rules, gradients and errors), but ranks may
    pass different row counts with no size exchange on the device path: each rank sends
    its rows padded to the capacity agreed for this layout (the largest row count of the
    first call, the full check) with its row count in the same buffer, in **one**
    ``all_gather``; every rank keeps ``world_size x capacity`` rows and builds ``valid``
    on the device from the gathered counts (row ``k`` of rank ``r`` is real when
    ``k < rows of rank r``). Nothing is read on the host and nothing is promised, so an
    epoch's smaller last batch on one rank (or no rows at all) trains like any other batch.
    Padded rows are zeros; a loss must leave them out of its pairs and its means (every
    gathering loss of :mod:`quaterion.loss` does, through ``GroupLoss.gather_padded``).

    Elsewhere (CPU tensors, where counts are free to read; a first call or a gather larger
    than 16 MiB per rank, which take the full check) the rows come back compact, with an
    all-true ``valid``; without a process group of more than one rank, the inputs
    themselves with an all-true ``valid``.

    Still an error on the device path: a rank passing **more** rows than the capacity
    while another can send it, or another layout (dtype, trailing shape,
    ``requires_grad``). Every rank then gets NaN floating outputs (all marked valid, so
    the loss is NaN and ``Quaterion.fit``'s non-finite guard does not apply the step) and
    raises the same :class:`RankMismatchError` two calls later (or at
    :func:`raise_pending_gather_errors`). Fix: make the first batch of a loop the largest
    (a fixed ``batch_size``), or call :func:`reset_gathers` on every rank before a larger
    one. When every rank passes more rows, they re-agree together, without an error.

    Args:
        tensors: this rank's tensors (at least one), sharing their first dimension.

    Returns:
        :class:`PaddedRows` ``(tensors, valid)``.

    Raises:
        ValueError: no tensors, or (single process) tensors that are not valid input;
            :class:`RankMismatchError` under a process group, as :func:`gather_rows`.
    """
    if not tensors:
        raise ValueError("gather_rows_padded needs at least one tensor, got none.")
    if world_size() == 1:
        rows, description, _ = _signature(tensors)
        if rows < 0:
            raise ValueError(f"gather_rows_padded: {description}.")
        return PaddedRows(tensors, torch.ones(rows, dtype=torch.bool, device=tensors[0].device))
    outputs, valid = _gather(tensors, equal_rows=False, padded=True)
    if valid is None:
        valid = torch.ones(outputs[0].shape[0], dtype=torch.bool, device=outputs[0].device)
    return PaddedRows(tuple(outputs), valid)
