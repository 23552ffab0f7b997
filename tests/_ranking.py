"""Check a search answer against scores computed independently (a brute-force pass)."""

from typing import Sequence

import numpy as np


def assert_top_k(got_ids: Sequence[int], scores: np.ndarray, higher_is_better: bool = True):
    """``got_ids`` (indices into ``scores``) is a best-first top ``len(got_ids)`` of ``scores``.

    Distinct ids whose scores equal the best scores in order, within float32 rounding: two
    candidates whose scores tie up to rounding may come in either order, because the two
    computations (another BLAS kernel, another summation order) may round them apart.
    """
    got = [int(i) for i in got_ids]
    assert len(set(got)) == len(got), f"repeated ids in {got}"
    scores = np.asarray(scores, dtype=np.float64)
    ordered = np.sort(scores)[::-1] if higher_is_better else np.sort(scores)
    np.testing.assert_allclose(scores[got], ordered[: len(got)], rtol=1e-5, atol=1e-6)
