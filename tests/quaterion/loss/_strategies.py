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


def check_finite_nonnegative_permutation_invariant(
    loss_fn, batch, learned=None, lower=0.0, upper=None, tol=None
) -> None:
    """Assert the properties every group loss shares on a drawn ``(rows, labels, perm)``.

    The loss (float64) is finite and >= 0, gradients to the embeddings (and to the
    ``learned`` parameter, if given) are finite, and permuting the batch together with its
    labels leaves the value unchanged. ``lower``/``upper`` bound the value; ``tol`` sets
    both tolerances of the permutation check (default: ``assert_close``'s).
    """
    import torch

    rows, labels, perm = batch
    emb = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    groups = torch.tensor(labels)
    loss = loss_fn(emb, groups)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() >= lower
    assert upper is None or loss.item() <= upper
    assert torch.isfinite(emb.grad).all()
    if learned is not None:
        assert learned.grad is not None and torch.isfinite(learned.grad).all()
    order = torch.tensor(perm)
    permuted = loss_fn(emb.detach()[order], groups[order])
    torch.testing.assert_close(permuted, loss.detach(), rtol=tol, atol=tol)


def with_kernel(loss_cls, kernel, **kwargs):
    """``loss_cls(d, C, **kwargs)`` in ``kernel``'s dtype with its ``kernel (d, C)`` set to ``kernel``."""
    import torch

    loss = loss_cls(kernel.shape[0], kernel.shape[1], **kwargs).to(kernel.dtype)
    with torch.no_grad():
        loss.kernel.copy_(kernel)
    return loss
