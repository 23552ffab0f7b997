"""GuardCallback beyond the training loss: gradients, validation, the loss's output shape."""

import math
import warnings
from typing import List

import pytest
import torch
from pytorch_lightning.plugins.precision import MixedPrecision

from quaterion import Quaterion
from quaterion.dataset import SimilarityGroupSample
from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.loss import TripletLoss
from quaterion.train.callbacks import (
    GuardCallback,
    NonFiniteGradientError,
    NonFiniteLossError,
    NonFiniteValidationError,
)
from tests.quaterion.train import helpers


class ScaledByNorm(helpers.CountingEncoder):
    """``h * |h|`` with ``h = W x`` (no bias): finite at ``x = 0``, but the derivative of
    ``|h| = sqrt(sum h^2)`` at 0 is ``inf * 0 = NaN``, which reaches ``W``'s gradient."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        hidden = batch @ self.linear.weight.T
        return hidden * torch.sqrt((hidden * hidden).sum(-1, keepdim=True))


def _zero_record_at(n: int, index: int) -> List[SimilarityGroupSample]:
    samples = helpers.group_samples(n)
    samples[index] = SimilarityGroupSample(
        obj=torch.zeros(helpers.IN_DIM), group=samples[index].group
    )
    return samples


def _norm_model(check: bool = True) -> helpers.Model:
    model = helpers.Model(encoders={"default": ScaledByNorm(trainable=True)})
    model.check_finite_loss = check
    return model


def _all_finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_the_zero_record_gives_a_finite_loss_and_a_nan_gradient():
    """The premise of the gradient tests, checked by hand on one batch."""
    model = _norm_model()
    features, targets = next(iter(_loader_of(_zero_record_at(8, 3))))
    loss = model.loss(embeddings=model.model(features), **targets)
    loss.backward()
    assert bool(torch.isfinite(loss))
    assert not bool(torch.isfinite(model.model.encoders["default"].linear.weight.grad).all())


def _loader_of(samples):
    loader = helpers.group_loader(samples)
    _norm_model().setup_dataloader(loader)
    return loader


@pytest.mark.parametrize("asynchronous", [False, True], ids=["immediate", "deferred"])
def test_nan_gradient_stops_fit_before_the_optimizer_step(asynchronous):
    """Zero record in the third batch: the error names the step and the parameter, and the
    weights equal those of a run that stopped after two batches (plain SGD: a zeroed
    gradient changes nothing)."""
    bad = _norm_model()
    with pytest.raises(NonFiniteGradientError) as info:
        Quaterion.fit(
            bad,
            helpers.trainer(callbacks=[GuardCallback(asynchronous=asynchronous)]),
            helpers.group_loader(_zero_record_at(32, 17)),
        )
    message = str(info.value)
    for words in (
        "'_model.default.linear.weight'",
        "epoch 0, step 2 (batch 2)",
        "loss was finite",
        "weights are still finite",
        "check_finite_loss",
    ):
        assert words in message, message
    helpers.assert_weights_of_a_shorter_fit(bad, _norm_model, helpers.group_samples(32)[:16])


def test_nan_gradient_reaches_the_weights_without_the_check():
    """The scenario is real: with ``check_finite_loss = False`` the NaN is applied."""
    model = _norm_model(check=False)
    Quaterion.fit(model, helpers.trainer(), helpers.group_loader(_zero_record_at(32, 17)))
    assert not _all_finite(model)


def test_gradient_scaler_skips_the_nan_step_itself():
    """Under 16-bit mixed precision the GradScaler skips steps with non-finite gradients
    (and lowers its scale): the guard leaves that to it instead of stopping the fit."""
    model = _norm_model()
    scaler = torch.amp.GradScaler("cpu")
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    Quaterion.fit(
        model, helpers.trainer(plugins=[plugin]), helpers.group_loader(_zero_record_at(32, 17))
    )
    assert _all_finite(model)
    assert scaler.get_scale() < torch.amp.GradScaler("cpu").get_scale()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["immediate", "deferred"])
def test_error_says_when_the_weights_are_already_not_finite(asynchronous):
    """lr=inf: the first step turns finite gradients into infinite weights, the next loss is
    NaN, and the message must not claim the weights are still finite."""
    model = helpers.Model(lr=math.inf)
    with pytest.raises(NonFiniteLossError) as info:
        Quaterion.fit(
            model,
            helpers.trainer(callbacks=[GuardCallback(asynchronous)]),
            helpers.group_loader(helpers.group_samples(32)),
        )
    message = str(info.value)
    assert "still finite" not in message and "already holds NaN or inf" in message, message
    assert not _all_finite(model)


def _val_samples(n: int, nan_index: int) -> List[SimilarityGroupSample]:
    samples = helpers.group_samples(n, seed=3)
    samples[nan_index] = SimilarityGroupSample(
        obj=torch.full((helpers.IN_DIM,), math.nan), group=samples[nan_index].group
    )
    return samples


@pytest.mark.parametrize("sanity_steps", [0, 2], ids=["epoch", "sanity-check"])
def test_nan_validation_loss_raises_naming_the_batch(sanity_steps):
    """One NaN record in the second of three validation batches."""
    model = helpers.Model()
    with pytest.raises(NonFiniteValidationError) as info:
        Quaterion.fit(
            model,
            helpers.trainer(num_sanity_val_steps=sanity_steps),
            helpers.group_loader(helpers.group_samples(16)),
            helpers.group_loader(_val_samples(24, nan_index=11)),
        )
    when = "the sanity check" if sanity_steps else "epoch 0"
    message = str(info.value)
    for words in ("Validation loss is nan in batch 1", f"1 non-finite batch(es) in {when}"):
        assert words in message, message
    assert _all_finite(model)


def test_nan_epoch_value_logged_by_an_overridden_step_raises():
    class SelfLogging(helpers.Model):
        def validation_step(self, batch, batch_idx):
            self.log("validation_loss", torch.tensor(math.nan), batch_size=1)

    with pytest.raises(NonFiniteValidationError, match="an overridden step logged it"):
        Quaterion.fit(
            SelfLogging(),
            helpers.trainer(),
            helpers.group_loader(helpers.group_samples(16)),
            helpers.group_loader(helpers.group_samples(8)),
        )


def test_finite_validation_passes_and_unchecked_model_trains_on():
    Quaterion.fit(
        helpers.Model(),
        helpers.trainer(),
        helpers.group_loader(helpers.group_samples(16)),
        helpers.group_loader(helpers.group_samples(8)),
    )
    unchecked = helpers.Model()
    unchecked.check_finite_loss = False
    fit_trainer = helpers.trainer()
    Quaterion.fit(
        unchecked,
        fit_trainer,
        helpers.group_loader(helpers.group_samples(16)),
        helpers.group_loader(_val_samples(24, nan_index=11)),
    )
    assert math.isnan(float(fit_trainer.callback_metrics["validation_loss"]))


def test_undefined_validation_metric_warns_once_naming_it():
    """Every validation group a singleton: R-precision is undefined, its epoch value NaN."""
    samples = [SimilarityGroupSample(obj=torch.randn(helpers.IN_DIM), group=i) for i in range(8)]
    metric = AttachedMetric("rrp", RetrievalRPrecision(), on_epoch=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Quaterion.fit(
            helpers.Model(metrics=[metric]),
            helpers.trainer(max_epochs=2),
            helpers.group_loader(helpers.group_samples(16)),
            helpers.group_loader(samples, batch_size=4),
        )
    hits = [str(w.message) for w in caught if "Metric 'rrp_validation'" in str(w.message)]
    assert len(hits) == 1, hits
    assert "is nan in epoch 0" in hits[0] and "undefined on every validation batch" in hits[0]


class PerRowTriplet(TripletLoss):
    """A loss that forgot to reduce: one value per row."""

    def forward(self, embeddings, groups):
        return embeddings.sum(dim=1) * 0 + super().forward(embeddings, groups)


class FloatLoss(TripletLoss):
    def forward(self, embeddings, groups):
        return float(super().forward(embeddings, groups))


@pytest.mark.parametrize(
    "loss, error, words",
    [
        (PerRowTriplet(), ValueError, ("PerRowTriplet", "shape (8,)", ".mean()")),
        (FloatLoss(), TypeError, ("FloatLoss", "returned float", "torch.Tensor")),
    ],
    ids=["per-row", "python-float"],
)
@pytest.mark.parametrize("validation", [False, True], ids=["train", "validation"])
def test_loss_output_that_is_not_a_scalar_tensor_is_named(loss, error, words, validation):
    model = helpers.Model(loss=loss)
    train, val = (
        helpers.group_loader(helpers.group_samples(16)),
        helpers.group_loader(helpers.group_samples(8)),
    )
    if validation:  # the training step is not reached: the sanity check runs first
        fit = lambda: Quaterion.fit(model, helpers.trainer(num_sanity_val_steps=1), train, val)  # noqa
    else:
        fit = lambda: Quaterion.fit(model, helpers.trainer(), train)  # noqa
    with pytest.raises(error) as info:
        fit()
    missing = [word for word in words if word not in str(info.value)]
    assert not missing, f"{missing} not in: {info.value}"


def test_one_element_loss_of_shape_1_is_accepted():
    """Lightning and autograd take a one-element loss; the original accepted it too."""

    class Shaped(TripletLoss):
        def forward(self, embeddings, groups):
            return super().forward(embeddings, groups).reshape(1)

    Quaterion.fit(
        helpers.Model(loss=Shaped()),
        helpers.trainer(),
        helpers.group_loader(helpers.group_samples(16)),
    )


class SparseLookup(helpers.CountingEncoder):
    """The linear output plus a row of an embedding table with sparse gradients. With
    ``bad``, the row goes through ``sqrt(0 * x)``, whose derivative at 0 makes the table's
    (sparse) gradient NaN on every step while the output stays finite."""

    def __init__(self, bad: bool):
        super().__init__(trainable=True)
        self.table = torch.nn.Embedding(2, 6, sparse=True)
        with torch.no_grad():
            self.table.weight.copy_(torch.randn(2, 6, generator=torch.Generator().manual_seed(1)))
        self.bad = bad

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        looked_up = self.table(torch.zeros(batch.shape[0], dtype=torch.long))
        if self.bad:
            looked_up = torch.sqrt(looked_up * 0)
        return self.linear(batch) + looked_up


@pytest.mark.parametrize("asynchronous", [False, True], ids=["immediate", "deferred"])
def test_sparse_gradients_are_checked(asynchronous):
    """Finite sparse gradients train exactly as without the check; a NaN one is caught."""
    guarded, unchecked = (
        helpers.Model(encoders={"default": SparseLookup(False)}) for _ in range(2)
    )
    unchecked.check_finite_loss = False
    for model in (guarded, unchecked):
        fit_trainer = helpers.trainer(callbacks=[GuardCallback(asynchronous)])
        Quaterion.fit(model, fit_trainer, helpers.group_loader(helpers.group_samples(16)))
    for got, expected in zip(guarded.parameters(), unchecked.parameters()):
        torch.testing.assert_close(got, expected)
    table = guarded.model.encoders["default"].table.weight
    assert not torch.allclose(table, SparseLookup(False).table.weight)  # it did train
    bad = helpers.Model(encoders={"default": SparseLookup(bad=True)})
    with pytest.raises(NonFiniteGradientError, match=r"'_model.default.table.weight' is NaN"):
        Quaterion.fit(
            bad,
            helpers.trainer(callbacks=[GuardCallback(asynchronous)]),
            helpers.group_loader(helpers.group_samples(16)),
        )
    assert _all_finite(bad)


def test_plain_trainer_fit_gets_the_guard_from_configure_callbacks():
    """Without ``Quaterion.fit``: ``TrainableModel.configure_callbacks`` attaches the guard,
    so a NaN gradient stops a plain ``trainer.fit`` before it is applied; a guard the user
    attached is kept (not replaced, not doubled)."""
    bad = _norm_model()
    loader = helpers.group_loader(_zero_record_at(32, 17))
    bad.setup_dataloader(loader)
    with pytest.raises(NonFiniteGradientError, match="epoch 0, step 2"):
        helpers.trainer().fit(bad, loader)
    helpers.assert_weights_of_a_shorter_fit(bad, _norm_model, helpers.group_samples(32)[:16])
    own = GuardCallback(asynchronous=True)
    fit_trainer = helpers.trainer(callbacks=[own])
    model = _norm_model()
    with pytest.raises(NonFiniteGradientError, match="were zeroed before the optimizer ran"):
        fit_trainer.fit(model, loader)  # the user's deferred guard reports it
    guards = [cb for cb in fit_trainer.callbacks if isinstance(cb, GuardCallback)]
    assert guards == [own]
