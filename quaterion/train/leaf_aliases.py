"""Read leaf tensors through aliases inside a block, so that gradients taken there do not
run the hooks registered on those leaves.

The gradient cache re-encodes a step mini-batch by mini-batch and sums the gradients; a
hook registered on a leaf (``Tensor.register_hook``) must see that sum once, as in plain
training, not each mini-batch's part. Parameters of the model are swapped for aliases with
``torch.func.functional_call``; any other leaf the model reads (a tensor captured from
outside, a plain attribute, a parameter reached by another path) is swapped here, as it is
handed to a torch function.
"""

from typing import Any, Dict, List, Set, Tuple

from torch import Tensor
from torch.overrides import TorchFunctionMode


class LeafAliases(TorchFunctionMode):
    """Inside ``with LeafAliases(keep):`` every leaf tensor that requires grad, handed to a
    torch function or tensor method, is replaced by its alias (the same storage, a new leaf
    made on first use), except the tensors whose ``id`` is in ``keep``.

    Attributes:
        pairs: ``(original, alias)`` of each leaf swapped, in the order first met.
    """

    def __init__(self, keep: Set[int]):
        super().__init__()
        self.keep = set(keep)
        self.pairs: List[Tuple[Tensor, Tensor]] = []
        self._alias_of: Dict[int, Tensor] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*self._swap(args), **self._swap(kwargs or {}))

    def _swap(self, value: Any) -> Any:
        if isinstance(value, Tensor):
            return self._alias(value)
        if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
            return type(value)(self._swap(item) for item in value)
        if type(value) is dict:
            return {key: self._swap(item) for key, item in value.items()}
        return value

    def _alias(self, tensor: Tensor) -> Tensor:
        if id(tensor) in self.keep or not (tensor.requires_grad and tensor.is_leaf):
            return tensor
        alias = self._alias_of.get(id(tensor))
        if alias is None:
            alias = tensor.detach().requires_grad_()
            self._alias_of[id(tensor)] = alias
            self.keep.add(id(alias))
            self.pairs.append((tensor, alias))
        return alias
