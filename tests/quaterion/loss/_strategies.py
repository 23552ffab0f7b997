"""Hypothesis strategies shared by the loss property tests."""

from hypothesis import strategies as st


def group_batches(min_batch: int = 1, max_batch: int = 8, dim: int = 3, num_groups: int = 4):
    """Draw ``(rows, labels, perm)``: ``b`` float rows of width ``dim``, ``b`` group ids in
    ``[0, num_groups)`` and a permutation of ``range(b)``, for ``b`` in ``[min_batch, max_batch]``.
    """
    return st.integers(min_batch, max_batch).flatmap(
        lambda b: st.tuples(
            st.lists(
                st.lists(st.floats(-5, 5, allow_nan=False), min_size=dim, max_size=dim),
                min_size=b,
                max_size=b,
            ),
            st.lists(st.integers(0, num_groups - 1), min_size=b, max_size=b),
            st.permutations(list(range(b))),
        )
    )
