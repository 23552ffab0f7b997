"""Weight-space interpolation between the weights a fit starts from and those it ends with."""

import warnings
from numbers import Real
from typing import Any, Dict, Optional

import pytorch_lightning as pl
import torch
from typing_extensions import override


class WeightInterpolation(pl.Callback):
    """When the fit ends, replace every floating-point weight ``w`` of the module by
    ``(1 - alpha) * w_start + alpha * w``, where ``w_start`` is its value when the fit began.

    This is the weight-space ensemble of WiSE-FT (Wortsman et al., 2022, "Robust
    fine-tuning of zero-shot models"): fine-tuning a pre-trained encoder, then moving part of
    the way back towards the pre-trained weights can score better on classes never seen in
    training than either end point (on the quick-start data it did on the validation topics
    but not on the held-out ones: see the large-batch guide). ``alpha=1`` keeps the
    fine-tuned weights, ``alpha=0`` restores the starting ones; pick ``alpha`` on a
    validation split.

    Every floating-point parameter and buffer of the ``LightningModule`` (for a
    :class:`~quaterion.train.trainable_model.TrainableModel`: the encoders, the head and the
    loss) is interpolated; integer buffers keep their final value. The starting weights are
    copied to CPU memory in ``setup`` (one extra copy of the model in host memory; layers
    built later, in ``configure_model``, at ``on_fit_start``), before a
    checkpoint given to ``trainer.fit(ckpt_path=...)`` is restored: they are part of this
    callback's ``state_dict`` (a checkpoint grows by one copy of the weights), so a resumed
    fit interpolates towards the weights the first fit started from (from a checkpoint
    written without this callback, towards the module's weights before the restore, with a
    warning); checkpoints written during the fit (``last.ckpt`` included) hold the plain
    fine-tuned weights. Validation during training and ``on_train_end`` hooks see the plain
    fine-tuned weights; the interpolation runs in ``on_fit_end``, so the interpolated ones
    are in place after ``trainer.fit`` returns (also after early stopping). Every rank
    applies the same formula to the same weights, so replicas stay equal; strategies that
    shard the weights across ranks (FSDP, DeepSpeed stage 3) are not supported.

    Args:
        alpha: weight of the fine-tuned end point, in ``[0, 1]``.

    Raises:
        TypeError: ``alpha`` is not a real number.
        ValueError: ``alpha`` is outside ``[0, 1]``.

    Example::

        trainer = pl.Trainer(max_epochs=3, callbacks=[WeightInterpolation(alpha=0.8)])
        Quaterion.fit(model, trainer, train_loader)  # model now holds the interpolated weights
    """

    def __init__(self, alpha: float):
        if isinstance(alpha, bool) or not isinstance(alpha, Real):
            raise TypeError(
                f"WeightInterpolation: alpha must be a number in [0, 1], got {type(alpha).__name__}"
            )
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(
                f"WeightInterpolation: alpha must be in [0, 1] (1 keeps the fine-tuned weights, "
                f"0 restores the starting ones), got {alpha}"
            )
        self.alpha = float(alpha)
        self._start: Optional[Dict[str, torch.Tensor]] = None
        self._restored = False  # whether the start came from a checkpoint

    @staticmethod
    def floating_state(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
        """The floating-point tensors of ``module.state_dict()``, by name (not copied); a
        tensor shared under several names (tied weights) appears once, under its first name,
        so that it is interpolated once."""
        found: Dict[str, torch.Tensor] = {}
        seen = set()
        for name, tensor in module.state_dict(keep_vars=True).items():
            if tensor.is_floating_point() and id(tensor) not in seen:
                seen.add(id(tensor))
                found[name] = tensor
        return found

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._start = {
                name: tensor.detach().to("cpu", copy=True)
                for name, tensor in self.floating_state(pl_module).items()
            }
            self._restored = False

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._start is not None:
            # layers built after setup (in LightningModule.configure_model) start here
            for name, tensor in self.floating_state(pl_module).items():
                if name not in self._start:
                    self._start[name] = tensor.detach().to("cpu", copy=True)
        if trainer.ckpt_path is not None and not self._restored:
            warnings.warn(
                f"WeightInterpolation: the checkpoint {trainer.ckpt_path} holds no "
                "WeightInterpolation state (it was written by a fit without this callback), "
                "so the starting weights of that fit are unknown: the weights are "
                "interpolated towards those the module had before the checkpoint was "
                "restored. Resume from a checkpoint of a fit that had the callback to "
                "interpolate towards its start.",
                stacklevel=2,
            )

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # on_fit_end, not on_train_end: ModelCheckpoint(save_last=True) may write last.ckpt
        # in its own on_train_end, which must hold the fine-tuned weights like every other
        # checkpoint of the fit
        if self._start is None:
            raise RuntimeError(
                "WeightInterpolation: no starting weights were recorded; the callback must be "
                "in the trainer's callbacks when trainer.fit starts"
            )
        current = self.floating_state(pl_module)
        missing = sorted(set(current) - set(self._start))
        if missing:
            raise RuntimeError(
                "WeightInterpolation: the module gained weights during the fit that have no "
                f"starting value ({', '.join(missing[:5])}); create every layer before "
                "trainer.fit starts"
            )
        changed = [name for name in current if current[name].shape != self._start[name].shape]
        if changed:
            raise RuntimeError(
                f"WeightInterpolation: weights changed shape during the fit ({', '.join(changed[:5])}); "
                "only weights of a fixed shape can be interpolated"
            )
        if self.alpha == 1.0:
            return
        with torch.no_grad():
            for name, tensor in current.items():
                start = self._start[name].to(device=tensor.device, dtype=tensor.dtype)
                tensor.lerp_(start, 1.0 - self.alpha)

    @override
    def state_dict(self) -> Dict[str, Any]:
        return {"alpha": self.alpha, "start": self._start}

    @override
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        if state_dict.get("start") is not None:
            self._start = state_dict["start"]
            self._restored = True
