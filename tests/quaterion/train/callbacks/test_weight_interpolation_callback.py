"""WeightInterpolation: the fit's end weights moved towards its start weights (WiSE-FT)."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from quaterion.train.callbacks import WeightInterpolation


class Regressor(pl.LightningModule):
    """Linear -> BatchNorm (float running stats, an int64 step counter) -> Linear."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.5)


def loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(dim=1)), batch_size=6)


def trainer(max_epochs: int, callbacks=(), **options) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        callbacks=list(callbacks),
        logger=False,
        enable_checkpointing=bool(options.pop("enable_checkpointing", False)),
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )


def state_of(module: torch.nn.Module) -> dict:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def fitted(max_epochs: int = 2) -> tuple:
    """(start, end) weights of a plain fit, no callback: the independent reference. The
    weights move, but stay of the order of the start (so that a wrong start would show
    against the tolerances)."""
    torch.manual_seed(7)
    model = Regressor()
    start = state_of(model)
    trainer(max_epochs).fit(model, loader())
    end = state_of(model)
    for name in ("net.0.weight", "net.2.bias", "net.1.running_mean"):
        assert 1e-2 < (end[name] - start[name]).abs().max() < 10 and end[name].abs().max() < 10
    return start, end


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.8, 1.0])
def test_end_weights_are_the_interpolation_of_a_plain_fit(alpha):
    start, end = fitted()
    torch.manual_seed(7)
    model = Regressor()
    trainer(2, [WeightInterpolation(alpha)]).fit(model, loader())
    result = state_of(model)
    for name, tensor in result.items():
        if tensor.is_floating_point():  # hand-written formula, in float64
            expected = (1 - alpha) * start[name].double() + alpha * end[name].double()
            torch.testing.assert_close(tensor.double(), expected, rtol=1e-6, atol=1e-7)
        else:  # BatchNorm's num_batches_tracked keeps the fine-tuned count
            assert tensor.item() == end[name].item() == 8


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_resumed_fit_interpolates_towards_the_first_start(tmp_path):
    start, end = fitted(max_epochs=2)
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    torch.manual_seed(7)
    first = Regressor()
    options = dict(enable_checkpointing=True, default_root_dir=tmp_path)
    trainer(1, [WeightInterpolation(0.5), checkpoints], **options).fit(first, loader())
    resumed = Regressor()  # other initial weights: the checkpoint must supply both states
    trainer(2, [WeightInterpolation(0.5)], default_root_dir=tmp_path).fit(
        resumed, loader(), ckpt_path=str(tmp_path / "last.ckpt")
    )
    result = state_of(resumed)
    for name in ("net.0.weight", "net.1.running_mean", "net.2.bias"):
        expected = 0.5 * start[name].double() + 0.5 * end[name].double()
        torch.testing.assert_close(result[name].double(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "alpha, error, message",
    [
        ("0.5", TypeError, "alpha must be a number"),
        (True, TypeError, "alpha must be a number"),
        (1.5, ValueError, r"alpha must be in \[0, 1\]"),
        (-0.1, ValueError, r"alpha must be in \[0, 1\]"),
        (float("nan"), ValueError, r"alpha must be in \[0, 1\]"),
    ],
)
def test_bad_alpha_is_refused(alpha, error, message):
    with pytest.raises(error, match=message):
        WeightInterpolation(alpha)


def test_numpy_and_integer_alphas_are_accepted():
    import numpy as np

    assert WeightInterpolation(np.float32(0.25)).alpha == 0.25
    assert WeightInterpolation(1).alpha == 1.0 and isinstance(WeightInterpolation(0).alpha, float)


def test_train_end_without_a_recorded_start_is_an_error():
    with pytest.raises(RuntimeError, match="no starting weights"):
        WeightInterpolation(0.5).on_fit_end(None, Regressor())


def test_weights_created_during_the_fit_are_an_error():
    class Growing(Regressor):
        def on_train_epoch_end(self):
            self.extra = torch.nn.Linear(2, 2)

    callback = WeightInterpolation(0.5)
    with pytest.raises(RuntimeError, match="gained weights during the fit"):
        trainer(1, [callback]).fit(Growing(), loader())


def test_layers_built_in_configure_model_are_interpolated():
    class Late(pl.LightningModule):
        """Its layer is built in configure_model (after the callbacks' setup)."""

        def __init__(self):
            super().__init__()
            self.net = None

        def configure_model(self):
            if self.net is None:
                self.net = torch.nn.Linear(3, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    starts = {}

    class Record(pl.Callback):  # the weights configure_model built, before any step
        def on_fit_start(self, trainer, pl_module):
            starts.update(state_of(pl_module))

    torch.manual_seed(3)
    plain = Late()
    trainer(2, [Record()]).fit(plain, loader())
    torch.manual_seed(3)
    model = Late()
    trainer(2, [WeightInterpolation(0.25)]).fit(model, loader())
    for name, tensor in state_of(model).items():
        expected = 0.75 * starts[name].double() + 0.25 * plain.state_dict()[name].double()
        torch.testing.assert_close(tensor.double(), expected, rtol=1e-6, atol=1e-7)


def test_trainable_model_with_a_cached_frozen_encoder_through_quaterion_fit():
    """Frozen encoder served from the cache keeps its weights; the trainable encoder and the
    head end on the interpolation of the same fit without the callback."""
    from quaterion.train.cache import CacheConfig, CacheType
    from tests.quaterion.train.helpers import CountingEncoder, Model, fit_losses, group_loader

    def make() -> Model:
        encoders = {"frozen": CountingEncoder(seed=1), "tuned": CountingEncoder(True, seed=2)}
        return Model(encoders, cache_config=CacheConfig(CacheType.CPU))

    plain = make()
    start = state_of(plain.model)
    fit_losses(plain, group_loader(), max_epochs=2)
    end = state_of(plain.model)
    model, alpha = make(), 0.4
    fit_losses(model, group_loader(), callbacks=[WeightInterpolation(alpha)], max_epochs=2)
    result = state_of(model.model)
    assert result.keys() == start.keys()
    for moved in ("tuned.linear.weight", "head.gates"):
        assert not torch.allclose(start[moved], end[moved])
    for name, tensor in result.items():
        expected = (1 - alpha) * start[name].double() + alpha * end[name].double()
        torch.testing.assert_close(tensor.double(), expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(result["frozen.linear.weight"], start["frozen.linear.weight"])
    torch.testing.assert_close(result["frozen.linear.bias"], start["frozen.linear.bias"])


class TiedRegressor(Regressor):
    """Two layers share one weight (tied weights: one tensor, two names in ``state_dict``)."""

    def __init__(self):
        super().__init__()
        self.out = torch.nn.Linear(4, 4)
        self.back = torch.nn.Linear(4, 4, bias=False)
        self.back.weight = self.out.weight

    def training_step(self, batch, batch_idx):
        x, y = batch
        hidden = self.back(self.out(self.net[0](x)))
        return torch.nn.functional.mse_loss(self.net[2](self.net[1](hidden)).squeeze(-1), y)


def test_tied_weights_are_interpolated_once():
    torch.manual_seed(7)
    plain = TiedRegressor()
    start = plain.out.weight.detach().clone()
    trainer(2).fit(plain, loader())
    end = plain.out.weight.detach().clone()
    assert 1e-2 < (end - start).abs().max() < 10
    torch.manual_seed(7)
    model = TiedRegressor()
    trainer(2, [WeightInterpolation(0.5)]).fit(model, loader())
    assert model.back.weight is model.out.weight
    expected = 0.5 * start.double() + 0.5 * end.double()
    torch.testing.assert_close(model.out.weight.double(), expected, rtol=1e-6, atol=1e-7)


def test_a_last_checkpoint_saved_when_training_ends_holds_the_fine_tuned_weights(tmp_path):
    """ModelCheckpoint(save_last=True) writes last.ckpt in its own on_train_end when no
    epoch wrote it (here: every 5th epoch of 2); a resumed fit must start from the plain
    fine-tuned weights, as from every other checkpoint of the fit."""
    _, end = fitted(max_epochs=2)
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_epochs=5)
    torch.manual_seed(7)
    model = Regressor()
    options = dict(enable_checkpointing=True, default_root_dir=tmp_path)
    trainer(2, [WeightInterpolation(0.5), checkpoints], **options).fit(model, loader())
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]
    for name in ("net.0.weight", "net.1.running_mean", "net.2.bias"):
        torch.testing.assert_close(saved[name], end[name], rtol=1e-6, atol=1e-7)


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_resuming_a_checkpoint_without_the_callbacks_state_warns(tmp_path):
    """The first fit's starting weights are unknown: the resumed fit says which it uses
    (the module's weights before the checkpoint was restored)."""
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    torch.manual_seed(7)
    options = dict(enable_checkpointing=True, default_root_dir=tmp_path)
    trainer(1, [checkpoints], **options).fit(Regressor(), loader())  # no WeightInterpolation
    resumed = Regressor()
    before = state_of(resumed)
    with pytest.warns(UserWarning, match="holds no WeightInterpolation state"):
        trainer(1, [WeightInterpolation(0.0)], default_root_dir=tmp_path).fit(
            resumed, loader(), ckpt_path=str(tmp_path / "last.ckpt")
        )
    for name, value in state_of(resumed).items():  # alpha 0: the weights it warned about
        if value.is_floating_point():
            torch.testing.assert_close(value, before[name])
