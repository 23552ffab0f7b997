"""Record the largest tensor produced by torch functions while a block runs."""

import torch


class LargestTensor(torch.overrides.TorchFunctionMode):
    """Context manager; ``self.numel`` is the largest ``numel`` of any torch-function output."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in out if isinstance(out, tuple) else (out,):
            if isinstance(item, torch.Tensor):
                self.numel = max(self.numel, item.numel())
        return out
