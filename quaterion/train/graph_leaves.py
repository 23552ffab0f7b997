"""The leaf tensors an autograd graph reaches: what a backward pass of it accumulates into.

The gradient cache re-encodes mini-batches inside the backward pass and must hand a gradient
to every tensor plain training would: the registered parameters, and also tensors that
require grad without being parameters of the step (a leaf kept as a plain attribute, a
tensor captured from outside, a parameter of a module that is not a sub-module). Those are
found by walking the graph from the output through the public ``grad_fn`` /
``next_functions`` links to the nodes that accumulate into a leaf (their ``variable``).
"""

from typing import List, Set

from torch import Tensor


def reached_leaves(output: Tensor, known: Set[int]) -> List[Tensor]:
    """Leaf tensors requiring grad that back-propagating ``output`` reaches, in the order
    found, except those whose ``id`` is in ``known``.

    Args:
        output: a tensor (its graph is only read, never run or freed).
        known: the ``id()`` of each tensor to leave out (e.g. the parameters handled elsewhere).

    Returns:
        The other leaves, each once. Empty when ``output`` does not require grad.
    """
    if not output.requires_grad:
        return []
    if output.grad_fn is None:  # the output is a leaf itself
        return [] if id(output) in known else [output]
    found: List[Tensor] = []
    taken: Set[int] = set()
    seen = set()
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # a node accumulating into a leaf
        if isinstance(variable, Tensor):
            if id(variable) not in known and id(variable) not in taken:
                taken.add(id(variable))
                found.append(variable)
            continue
        stack.extend(following for following, _ in node.next_functions)
    return found
