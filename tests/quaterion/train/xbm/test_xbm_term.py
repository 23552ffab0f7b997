"""``memory_term`` in one process: the term against the memory read before the step's rows
are queued, for the package's losses (masks) and for an ``xbm_loss`` written with the
spec's four arguments (no masks), compared with the loss's own ``xbm_loss`` on the rows
queued so far."""

import pytest
import torch
from torch.testing import assert_close

from quaterion.loss import TripletLoss
from quaterion.train.xbm import XbmConfig, XbmDevice
from quaterion.train.xbm.xbm_buffer import XbmBuffer
from quaterion.train.xbm.xbm_term import memory_term


class FourArguments(TripletLoss):
    """An override as the spec writes it: no ``valid`` / ``memory_valid``."""

    def xbm_loss(self, embeddings, groups, memory_embeddings, memory_groups):
        return super().xbm_loss(embeddings, groups, memory_embeddings, memory_groups)


@pytest.mark.parametrize("cls", [TripletLoss, FourArguments])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_each_step_sees_the_rows_of_the_earlier_steps(cls, dtype):
    loss = cls(mining="semi_hard")
    buffer = XbmBuffer(XbmConfig(buffer_size=7, device=XbmDevice.CPU), embedding_size=3)
    generator = torch.Generator().manual_seed(0)
    seen_rows, seen_groups = [], []
    for _ in range(5):
        rows = torch.randn(3, 3, generator=generator, dtype=dtype)
        groups = torch.randint(0, 2, (3,), generator=generator)
        got = memory_term(loss, buffer, rows, groups)
        # independent: the last 7 rows queued before this step, oldest first in any order
        memory = torch.cat(seen_rows)[-7:] if seen_rows else rows[:0]
        memory_groups = torch.cat(seen_groups)[-7:] if seen_groups else groups[:0]
        # the buffer keeps float32 (read back in the rows' dtype)
        memory = memory.float().to(dtype)
        expected = TripletLoss(mining="semi_hard").xbm_loss(rows, groups, memory, memory_groups)
        assert got.dtype == dtype
        assert_close(got, expected, rtol=1e-6, atol=1e-7)
        seen_rows.append(rows)
        seen_groups.append(groups)
