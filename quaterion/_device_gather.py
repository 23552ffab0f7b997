"""The device path of :func:`quaterion.distributed.gather_rows`: no size exchange.

On a GPU, reading the row counts that the ranks sent would make the host wait for the
device. When the caller promises equal row counts (``equal_rows=True``: a training batch
of a fixed-size loader) and every rank expects the same layout (a
:class:`~quaterion._gather_plan.AgreedLayout` of capacity ``C``), each rank sends its ``n``
rows padded to ``C`` with a header in the same device buffer: ``n``, or a negative code
when it cannot send the layout. One ``all_gather`` on the device; each rank then takes
``n`` rows of every rank (its own ``n``: the promise), without reading anything.

Whether the promise held is decided on the device (every header equals ``n``) and read
:data:`~quaterion.deferred_checks.LAG` calls later; until then the floating outputs are
NaN where it failed, so the non-finite guard zeroes the gradients of those steps and they
are never applied. A rank that cannot send the layout knows it on the host: it reads the
headers (a wait, on this rare path only). If no rank could send it, every rank reads the
same and all take the full check together; otherwise it answers like the ranks that did
(poisoned outputs of the expected layout, the same backward collectives, the same failed
verdict), so every rank raises the same error at the same later call.

Padded (:func:`quaterion.distributed.gather_rows_padded`, what the losses use): the same
buffer and the same one ``all_gather``, but each rank keeps every rank's ``C`` rows and
builds a validity mask on the device from the gathered headers (row ``k`` of rank ``r`` is
real when ``k < header[r]``), so ranks may send different row counts up to ``C`` without
any promise. Only a rank that cannot send the layout (more rows than ``C``, another
dtype or shape) fails the verdict, as above.
"""

from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from quaterion.deferred_checks import LAG, DeferredChecks
from quaterion._gather_plan import AgreedLayout
from quaterion._row_packing import pack_into, unpack

# bytes after the padded rows: the sender's header (int64)
HEADER_BYTES = 8
# header of a rank whose tensors have another layout (or are not valid input at all)
OTHER_LAYOUT = -1

FIX = (
    "Give every rank the same number of rows per call: drop_last=True on the training "
    "loader, or a sampler that gives every rank the same number of samples per batch (as "
    "Lightning's DistributedSampler does), and build the batch the same way on every rank "
    "(the same model, precision and encoders)."
)
PADDED_FIX = (
    "The first call of a layout (the full check) fixes how many rows each rank may send "
    "later without a size exchange: make the first batch of the loop the largest on every "
    "rank (a fixed batch_size; drop_last=True), or call distributed.reset_gathers() on "
    "every rank before a larger batch; and build the batch the same way on every rank "
    "(the same model, precision and encoders)."
)


def header_of(rows: int, same_layout: bool, capacity: int) -> int:
    """What a rank announces: its row count, ``-2 - rows`` when it holds more rows than the
    agreed ``capacity``, :data:`OTHER_LAYOUT` for another layout."""
    if not same_layout or rows < 0:
        return OTHER_LAYOUT
    return rows if rows <= capacity else -2 - rows


def describe_headers(headers: Sequence[int], capacity: int) -> str:
    """One line per rank saying what it sent."""
    lines = []
    for rank, header in enumerate(headers):
        if header >= 0:
            what = f"{header} rows"
        elif header == OTHER_LAYOUT:
            what = "another layout (tensor count, dtype, trailing shape, requires_grad or device)"
        else:
            what = f"{-2 - header} rows, more than the {capacity} rows agreed for this call"
        lines.append(f"  rank {rank}: {what}")
    return "\n".join(lines)


class _TrustedRows(torch.autograd.Function):
    """Unpacks ``n`` rows of every rank, NaN where ``ok`` is false (floating tensors).

    Backward pads each gradient to ``capacity`` rows per rank, so the ``all_reduce`` has the
    same shape on every rank whatever ``n`` each one assumed, and hands this rank the
    gradient of its own rows (the first rows of its slot).
    """

    @staticmethod
    def forward(ctx, meta: Tuple[int, int, int, int, object], rows: Tensor, ok: Tensor, *tensors):
        ctx.meta = meta
        ctx.own = tensors[0].shape[0]
        outputs = []
        for out in unpack(rows, tensors):
            if out.is_floating_point():
                out = out.masked_fill(~ok, float("nan"))  # a device op: nothing is read
            outputs.append(out)
        ctx.mark_non_differentiable(
            *[out for out, needed in zip(outputs, ctx.needs_input_grad[3:]) if not needed]
        )
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grads: Optional[Tensor]):
        n, capacity, world, rank, group = ctx.meta
        inputs: List[Optional[Tensor]] = []
        for grad, needed in zip(grads, ctx.needs_input_grad[3:]):
            if not needed:
                inputs.append(None)
                continue
            per_rank = grad.contiguous().reshape(world, n, *grad.shape[1:])
            if n != capacity:
                padded = grad.new_zeros((world, capacity, *grad.shape[1:]))
                padded[:, :n] = per_rank
                per_rank = padded
            dist.all_reduce(per_rank, group=group)
            inputs.append(per_rank[rank, : ctx.own])
        return (None, None, None, *inputs)


def gather_trusted(
    expected: AgreedLayout,
    tensors: Sequence[Tensor],
    header: int,
    where: Tuple[torch.device, int, int, object],
    checks: DeferredChecks,
    make_error: Callable[[str], BaseException],
    padded: bool = False,
) -> Optional[Tuple[Tuple[Tensor, ...], Tensor]]:
    """One ``all_gather`` of ``expected.capacity`` rows per rank, nothing read on the host
    when this rank could send the layout (``header >= 0``).

    Args:
        expected: the layout every rank expects (its buffer size is the same on every rank).
        tensors: this rank's tensors.
        header: :func:`header_of` this rank's tensors.
        where: ``(device of the buffer when this rank cannot send, rank, world, group)``.
        checks: where the verdict is queued.
        make_error: builds the error raised when the verdict is read.
        padded: keep every rank's ``capacity`` rows and mark the real ones (any counts up
            to the capacity are fine); ``False``: take ``header`` rows of every rank (the
            ``equal_rows`` promise, checked on the device).

    Returns:
        ``(gathered tensors, valid)``: ``valid`` is a bool device tensor with one entry per
        gathered row (all true without ``padded``, and wherever the verdict failed, so that
        the NaN outputs reach the loss); or ``None`` on every rank when no rank could send
        the layout (then every rank takes the full check).
    """
    device, rank, world, group = where
    capacity, width = expected.capacity, expected.row_bytes
    if header >= 0:
        device = tensors[0].device if tensors else device
    payload = torch.zeros(capacity * width + HEADER_BYTES, dtype=torch.uint8, device=device)
    if header > 0:
        pack_into(payload[: capacity * width].view(capacity, width), tensors)
    # a fill on the device: a host scalar copied with .copy_ would wait for the device
    payload[-HEADER_BYTES:] = torch.full((1,), header, dtype=torch.int64, device=device).view(
        torch.uint8
    )
    parts = [torch.empty_like(payload) for _ in range(world)]
    dist.all_gather(parts, payload, group=group)
    stacked = torch.stack(parts)
    headers = stacked[:, -HEADER_BYTES:].contiguous().view(torch.int64).reshape(world)
    if header >= 0:
        ok = (headers >= 0).all() if padded else (headers == header).all()
        like = tensors
        rows = capacity if padded else header
    else:
        seen = headers.tolist()  # waits for the device: only when this rank cannot send
        if max(seen) < 0:
            return None  # no rank could: every rank sees this and takes the full check
        ok = torch.zeros((), dtype=torch.bool, device=device)
        like = _stand_ins(expected, device)
        rows = capacity
    packed = stacked[:, : capacity * width].reshape(world, capacity, width)[:, :rows]
    verdict = torch.cat([ok.to(torch.int64).reshape(1), headers])
    checks.record(
        verdict, lambda call, values: make_error(_late_message(call, values, capacity, padded))
    )
    meta = (rows, capacity, world, rank, group)
    outputs = _TrustedRows.apply(meta, packed.reshape(world * rows, width), ok, *like)
    # the real rows: the first header[r] of each rank's slot; every row where the verdict
    # failed (its NaN must reach the loss), on the device, nothing read
    slot = torch.arange(rows, device=headers.device)
    valid = ((slot[None, :] < headers[:, None]) | ~ok).reshape(world * rows)
    if not padded:
        valid = torch.ones_like(valid)
    return (outputs if header >= 0 else _attached(outputs, tensors)), valid


def _attached(outputs: Sequence[Tensor], tensors: Sequence[object]) -> Tuple[Tensor, ...]:
    """The stand-ins' outputs, made to depend on this rank's own tensors that require grad
    (times 0; the outputs are NaN anyway): backward then reaches the parameters that
    produced them, as on every other rank, so DDP's gradient reduction does not wait for
    parameters this rank never used."""
    own = [t for t in tensors if isinstance(t, Tensor) and t.requires_grad]
    if not own:
        return tuple(outputs)
    anchor = sum(t.sum() for t in own) * 0
    return tuple(out + anchor.to(out.dtype) if out.is_floating_point() else out for out in outputs)


def _stand_ins(expected: AgreedLayout, device: torch.device) -> List[Tensor]:
    """Zero tensors of the expected layout for a rank that could not send it: its outputs
    and its backward collectives are then those of the ranks that could."""
    grad = torch.is_grad_enabled()
    return [
        torch.zeros(
            (expected.capacity, *shape),
            dtype=dtype,
            device=device,
            requires_grad=needs_grad and grad and dtype.is_floating_point,
        )
        for dtype, shape, needs_grad in expected.specs
    ]


def _late_message(call: int, values: List[int], capacity: int, padded: bool = False) -> str:
    if padded:
        what = (
            "gather_rows_padded, the device path: checked on the device and read "
            f"{LAG} calls later): every rank must pass the agreed layout with at most "
            f"{capacity} rows (the capacity agreed at the first call of this layout)"
        )
    else:
        what = (
            f"equal_rows=True, the device path: checked on the device and read {LAG} calls "
            "later): every rank must pass the same number of rows in the agreed layout"
        )
    return (
        f"gather_rows call {call} ({what}, but the ranks sent:\n"
        f"{describe_headers(values[1:], capacity)}\n"
        "Its floating outputs were set to NaN: under Quaterion.fit the non-finite guard "
        "zeroed the gradients of that step and of the steps after it, so none of them was "
        f"applied. {PADDED_FIX if padded else FIX}"
    )


def unequal_message(sizes: Sequence[int]) -> str:
    """The error of a full check that found unequal row counts under ``equal_rows=True``."""
    return (
        "gather_rows(equal_rows=True) on the device path: every rank must pass the same "
        f"number of rows, but the ranks passed:\n{describe_headers(sizes, max(sizes))}\n{FIX}"
    )
