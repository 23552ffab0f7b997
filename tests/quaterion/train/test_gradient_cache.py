"""Gradient cache: the cached step's gradients equal plain full-batch training."""

import pytest
import torch

from quaterion import Quaterion
from quaterion.distances import Distance
from quaterion.loss import TripletLoss
from quaterion.train import GradientCacheConfig
from quaterion.train.cache import CacheConfig, CacheType
from quaterion.train.xbm import XbmConfig
from quaterion.utils.testing import count_host_syncs
from tests.quaterion.train import gradient_cache_helpers as h
from tests.quaterion.train.helpers import trainer

MINI = 5  # 22 records -> 5, 5, 5, 5, 2; 9 pairs (18 embeddings) -> 5, 5, 5, 3


def _pair(case, dtype, mini=MINI, encoders=None, **kwargs):
    """The same model twice (same init): plain and with the gradient cache."""
    dtype_name = str(dtype).split(".")[-1]

    def build(size):
        made = encoders() if encoders else {"default": h.DropoutEncoder(dtype_name)}
        return h.CachedModel(made, h.loss_for(case, dtype), size, **kwargs)

    return build(None), build(mini)


def _same_step(plain, cached, batch, rtol=1e-10):
    """A plain training step and a cached one on ``batch``: same loss and gradients."""
    expected_loss = plain.training_step(batch, 0)
    expected_loss.backward()
    loss, got = h.cached_step(cached, batch)
    torch.testing.assert_close(loss, expected_loss.detach(), rtol=rtol, atol=0.0)
    h.assert_same_grads(got, h.grads_of(plain), rtol)
    return got


def _against_sequential(case, encoder):
    """Plain and cached float64 models of one ``encoder()``; the cached step's loss and
    gradients equal those of encoding the mini-batches in sequence, keeping the graph."""
    plain, cached = _pair(case, torch.float64, encoders=lambda: {"default": encoder()})
    h.attach_trainer(cached)
    batch = h.first_batch(plain, h.loader_for(case, torch.float64))
    expected_loss, expected = h.sequential_step(plain, batch, MINI)
    loss, got = h.cached_step(cached, batch)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-10, atol=0.0)
    h.assert_same_grads(got, expected, 1e-10)
    return plain, cached


@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("case", h.CASES)
def test_every_loss_family_gets_the_full_batch_gradient(case, dtype, rtol):
    plain, cached = _pair(case, dtype)
    for model in (plain, cached):
        h.attach_trainer(model)
    batch = h.first_batch(plain, h.loader_for(case, dtype))
    expected_loss = plain.training_step(batch, 0)
    expected_loss.backward()
    expected = h.grads_of(plain)
    loss, got = h.cached_step(cached, batch)
    torch.testing.assert_close(loss, expected_loss.detach(), rtol=rtol, atol=0.0)
    # the model's parameters and, for classifier losses, the loss's own parameters
    assert any(name.startswith("_model.default") for name in expected)
    if case in ("softmax", "arcface", "cosface", "center"):
        assert any(name.startswith("_loss.") for name in expected)
    h.assert_same_grads(got, expected, rtol)


def test_dropout_replays_the_random_state_of_each_mini_batch():
    def encoders():
        return {"default": h.DropoutEncoder("float64", dropout=0.5)}

    plain, cached = _pair("triplet_all", torch.float64, encoders=encoders)
    h.attach_trainer(cached)
    batch = h.first_batch(plain, h.loader_for("triplet_all", torch.float64))
    torch.manual_seed(123)
    expected_loss, expected = h.sequential_step(plain, batch, MINI)
    after_reference = torch.rand(3)
    torch.manual_seed(123)
    loss, got = h.cached_step(cached, batch)
    # the replay leaves the random stream where the first pass left it
    torch.testing.assert_close(torch.rand(3), after_reference, rtol=0, atol=0)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-10, atol=0.0)
    h.assert_same_grads(got, expected, 1e-10)
    # dropout really acts: another random state gives another gradient
    torch.manual_seed(124)
    _, other = h.sequential_step(plain, batch, MINI)
    assert not torch.allclose(
        other["_model.default.first.weight"], got["_model.default.first.weight"]
    )


def test_batch_norm_statistics_are_updated_once_per_mini_batch():
    class NormEncoder(h.DropoutEncoder):
        def __init__(self):
            super().__init__("float64")
            self.norm = torch.nn.BatchNorm1d(8, dtype=torch.float64)

        def forward(self, batch):
            return self.second(torch.tanh(self.norm(self.first(batch))))

    plain, cached = _against_sequential("triplet_hard", NormEncoder)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        reference = getattr(plain.model.encoders["default"].norm, name)
        torch.testing.assert_close(getattr(cached.model.encoders["default"].norm, name), reference)
    assert int(cached.model.encoders["default"].norm.num_batches_tracked) == 5


def test_several_encoders_with_a_frozen_one():
    def encoders():
        return {
            "text": h.DropoutEncoder("float64", seed=1),
            "frozen": h.DropoutEncoder("float64", seed=4, trainable=False),
            "image": h.DropoutEncoder("float64", seed=2),
        }

    plain, cached = _pair("circle", torch.float64, encoders=encoders)
    for model in (plain, cached):
        h.attach_trainer(model)
    batch = h.first_batch(plain, h.loader_for("circle", torch.float64))
    got = _same_step(plain, cached, batch)
    assert {name.split(".")[1] for name in got} == {"text", "image", "head"}


def test_xbm_term_is_part_of_the_cached_loss():
    xbm = XbmConfig(buffer_size=64, start_iteration=-1)
    plain, cached = _pair("triplet_all", torch.float64, xbm=xbm)
    batch = h.first_batch(plain, h.loader_for("triplet_all", torch.float64))
    earlier = h.first_batch(plain, h.GroupSimilarityDataLoader(h.group_samples(9, seed=4)))
    for model in (plain, cached):
        h.attach_trainer(model)
        model.training_step(earlier, 0)  # fills the memory the same way in both
    _same_step(plain, cached, batch)


class _CountingFrozen(h.DropoutEncoder):
    """Frozen encoder counting the records it encodes."""

    def __init__(self):
        super().__init__("float32", seed=4, trainable=False)
        self.calls = 0

    def forward(self, batch):
        self.calls += batch.shape[0]
        return super().forward(batch)


def test_lightning_fit_with_cached_frozen_encoder_clipping_and_accumulation():
    """Two steps of a real fit (SGD, clipping, accumulation over 2 batches): same weights."""

    def encoders():
        return {
            "default": h.DropoutEncoder("float32", seed=1),
            "frozen": _CountingFrozen(),
        }

    cache = CacheConfig(CacheType.AUTO)
    plain, cached = _pair("triplet_hard", torch.float32, encoders=encoders, cache=cache, lr=0.1)
    options = dict(max_steps=2, accumulate_grad_batches=2, gradient_clip_val=0.05)
    for model in (plain, cached):
        loader = h.GroupSimilarityDataLoader(h.group_samples(44), batch_size=11)
        Quaterion.fit(model, trainer(**options), loader)
    assert cached.model.encoders["frozen"].calls == 44  # filled once, served from the cache
    for (name, expected), got in zip(plain.named_parameters(), cached.parameters()):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7, msg=name)
    assert not torch.allclose(
        plain.model.encoders["default"].first.weight,
        h.DropoutEncoder("float32", seed=1).first.weight,
    ), "training should have moved the weights"


@pytest.mark.parametrize("size", [0, -3])
def test_mini_batch_size_must_be_positive(size):
    with pytest.raises(ValueError, match="positive int"):
        GradientCacheConfig(mini_batch_size=size)


@pytest.mark.parametrize("size", [True, 2.0, "4", None])
def test_mini_batch_size_must_be_an_int(size):
    with pytest.raises(TypeError, match="mini_batch_size must be a positive int"):
        GradientCacheConfig(mini_batch_size=size)


def test_numpy_integer_mini_batch_size_is_taken_as_int():
    import numpy as np

    config = GradientCacheConfig(mini_batch_size=np.int64(8))
    assert config.mini_batch_size == 8 and type(config.mini_batch_size) is int
    with pytest.raises(ValueError, match="positive int"):
        GradientCacheConfig(mini_batch_size=np.int32(0))


def test_hook_must_return_a_config():
    class Wrong(h.CachedModel):
        def configure_gradient_cache(self):
            return 32

    with pytest.raises(TypeError, match="configure_gradient_cache"):
        Wrong({"default": h.DropoutEncoder()}, h.loss_for("triplet_all", torch.float32))


def test_backward_twice_is_refused():
    _, cached = _pair("triplet_all", torch.float32)
    h.attach_trainer(cached)
    batch = h.first_batch(cached, h.loader_for("triplet_all", torch.float32))
    loss = cached.training_step(batch, 0)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="back-propagated twice"):
        loss.backward()


def test_switch_encoder_options_split_across_mini_batches():
    def encoders():
        options = {
            "pos": h.DropoutEncoder("float64", seed=5),
            "neg": h.DropoutEncoder("float64", seed=6),
        }
        return {"default": h.Switch(options)}

    plain, cached = _pair("triplet_semi_hard", torch.float64, encoders=encoders, mini=4)
    for model in (plain, cached):
        h.attach_trainer(model)
    batch = h.first_batch(plain, h.loader_for("triplet_semi_hard", torch.float64))
    ordering = batch[0]["data"]["default"]["ordering"]
    assert len(ordering["pos"]) > 4 and len(ordering["neg"]) > 4  # both options in several
    got = _same_step(plain, cached, batch)
    assert any(".pos." in name for name in got) and any(".neg." in name for name in got)


@pytest.mark.parametrize("case", ["triplet_hard", "mnrl", "arcface"])
def test_gradient_cache_adds_no_host_sync(case):
    plain, cached = _pair(case, torch.float32)
    batch = h.first_batch(plain, h.loader_for(case, torch.float32))
    counts = []
    for model in (plain, cached):
        h.attach_trainer(model)
        with count_host_syncs() as counter:
            model.training_step(batch, 0).backward()
        counts.append(counter)
    assert counts[1].total == counts[0].total, f"plain {counts[0]}, cached {counts[1]}"


def test_transformer_with_dropout_tokenizer_batches_are_cut(tmp_path):
    """A real (tiny) BERT in train mode: tokenizer dicts are cut, dropout is replayed."""
    from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder
    from tests.quaterion_models.tiny_models import write_tiny_bert

    path = write_tiny_bert(str(tmp_path / "bert"), pooling="mean")
    words = ["bread", "bees", "law", "rain", "chess", "tea", "jazz"]
    texts = [f"{words[i % 7]} {words[(i * 3) % 7]} number {i}" for i in range(14)]
    samples = [h.SimilarityGroupSample(obj=t, group=i % 3) for i, t in enumerate(texts)]

    def build(mini):
        torch.manual_seed(0)
        encoder = TransformerEncoder(path, trainable=True)
        encoder.train()
        return h.CachedModel({"default": encoder}, h.loss_for("triplet_all", torch.float32), mini)

    plain, cached = build(None), build(4)
    h.attach_trainer(cached)
    batch = h.first_batch(plain, h.GroupSimilarityDataLoader(samples, batch_size=14))
    torch.manual_seed(9)
    expected_loss, expected = h.sequential_step(plain, batch, 4)
    torch.manual_seed(9)
    loss, got = h.cached_step(cached, batch)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=0.0)
    h.assert_same_grads(got, expected, 1e-5)


def test_autocast_of_the_step_is_honoured_in_the_reencoding():
    """Under bfloat16 autocast the re-encoding runs in bfloat16 too (backward runs outside
    the autocast block, as in Lightning's precision plugin). Each re-encoded mini-batch casts
    the weights afresh, so the reference opens one autocast block per mini-batch."""
    plain, cached = _pair("triplet_all", torch.float32)
    h.attach_trainer(cached)
    batch = h.first_batch(plain, h.loader_for("triplet_all", torch.float32))

    def bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    _, expected = h.sequential_step(plain, batch, MINI, forward_context=bf16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = cached.training_step(batch, 0)
    cached.zero_grad(set_to_none=True)
    loss.backward()
    h.assert_same_grads(h.grads_of(cached), expected, 1e-5)
    # float32 re-encoding would give another gradient
    _, full_precision = h.sequential_step(plain, batch, MINI)
    name = "_model.default.first.weight"
    assert not torch.allclose(full_precision[name], expected[name], rtol=1e-5, atol=0)


@pytest.mark.parametrize("mini", [22, 64])
def test_a_batch_within_one_mini_batch_is_encoded_once(mini):
    # 22 records and mini-batches of 22 or 64: one plain pass, same loss, gradients and
    # random draws as plain training (dropout on)
    def encoders():
        return {"default": h.DropoutEncoder("float64", dropout=0.5)}

    plain, cached = _pair("triplet_all", torch.float64, mini=mini, encoders=encoders)
    for model in (plain, cached):
        h.attach_trainer(model)
    batch = h.first_batch(plain, h.loader_for("triplet_all", torch.float64))
    torch.manual_seed(7)
    expected_loss = plain.training_step(batch, 0)
    expected_loss.backward()
    after_reference = torch.rand(3)
    calls = []
    cached.model.register_forward_hook(lambda *args: calls.append(1))
    torch.manual_seed(7)
    loss, got = h.cached_step(cached, batch)
    assert len(calls) == 1
    torch.testing.assert_close(torch.rand(3), after_reference, rtol=0, atol=0)
    torch.testing.assert_close(loss, expected_loss.detach(), rtol=1e-10, atol=0.0)
    h.assert_same_grads(got, h.grads_of(plain), 1e-10)


class _StepCounting(h.DropoutEncoder):
    """Its output reads a buffer that each training forward increments (a step counter)."""

    def __init__(self):
        super().__init__("float64")
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def forward(self, batch):
        out = super().forward(batch) * (1 + 0.1 * self.count)
        if self.training:
            self.count += 1
        return out


def test_a_forward_reading_a_buffer_it_updates_is_replayed_from_the_same_buffers():
    _, cached = _against_sequential("triplet_all", _StepCounting)
    # the first pass's updates stand: one per mini-batch, as in the reference
    assert cached.model.encoders["default"].count.tolist() == 5.0


class _TupleEncoder(h.DropoutEncoder):
    """Collates ``(features, row scales)``: a tuple of two per-record tensors."""

    def collate(self, batch):
        data = super().collate(batch)
        return data, data.abs().sum(dim=1, keepdim=True)

    def forward(self, batch):
        data, scale = batch
        return super().forward(data) * scale


def test_a_tuple_collate_with_a_batch_of_its_own_length():
    plain, cached = _pair(
        "softmax", torch.float64, mini=1, encoders=lambda: {"default": _TupleEncoder("float64")}
    )
    for model in (plain, cached):
        h.attach_trainer(model)
    samples = h.group_samples(2, dtype=torch.float64)  # 2 records, a 2-tuple input
    batch = h.first_batch(plain, h.GroupSimilarityDataLoader(samples, batch_size=2))
    _same_step(plain, cached, batch)


class _WholeBatch(h.DropoutEncoder):
    """Ignores the mini-batch it is given: always encodes 3 rows."""

    def forward(self, batch):
        return super().forward(torch.ones(3, batch.shape[1], dtype=batch.dtype))


def test_an_encoder_returning_other_rows_than_records_is_named():
    _, cached = _pair(
        "triplet_all", torch.float64, encoders=lambda: {"default": _WholeBatch("float64")}
    )
    h.attach_trainer(cached)
    batch = h.first_batch(cached, h.loader_for("triplet_all", torch.float64))
    with pytest.raises(ValueError, match=r"3 embeddings for the 5 records 0:5"):
        cached.training_step(batch, 0)


class _TemperedTriplet(TripletLoss):
    """Scales the embeddings by a learnable tensor kept outside ``parameters()``."""

    def __init__(self):
        super().__init__(mining="all", distance_metric_name=Distance.EUCLIDEAN)
        self.temperature = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)

    def forward(self, embeddings, groups):
        return super().forward(embeddings * self.temperature, groups)


def test_a_leaf_of_the_loss_outside_its_parameters_gets_its_gradient():
    # e.g. a temperature given to the optimiser by hand: plain autograd reaches every leaf
    def build(mini):
        return h.CachedModel({"default": h.DropoutEncoder("float64")}, _TemperedTriplet(), mini)

    plain, cached = build(None), build(MINI)
    h.attach_trainer(cached)
    batch = h.first_batch(plain, h.loader_for("triplet_all", torch.float64))
    h.sequential_step(plain, batch, MINI)
    expected = plain.loss.temperature.grad
    assert expected is not None and expected.abs() > 0
    h.cached_step(cached, batch)
    torch.testing.assert_close(cached.loss.temperature.grad, expected, rtol=1e-10, atol=0.0)


class _InPlaceTriplet(TripletLoss):
    """Normalises the embeddings in place before the triplet loss."""

    def forward(self, embeddings, groups):
        embeddings.mul_(2.0)
        return super().forward(embeddings, groups)


def test_a_loss_working_on_the_embeddings_in_place():
    def build(mini):
        loss = _InPlaceTriplet(mining="all", distance_metric_name=Distance.EUCLIDEAN)
        return h.CachedModel({"default": h.DropoutEncoder("float64")}, loss, mini)

    plain, cached = build(None), build(MINI)
    for model in (plain, cached):
        h.attach_trainer(model)
    batch = h.first_batch(plain, h.loader_for("triplet_all", torch.float64))
    _same_step(plain, cached, batch)


def test_a_second_order_gradient_is_refused():
    # the re-encoding's gradients carry no graph: a Hessian-vector product through them
    # would silently miss the second-order terms
    _, cached = _pair("triplet_all", torch.float64)
    h.attach_trainer(cached)
    batch = h.first_batch(cached, h.loader_for("triplet_all", torch.float64))
    weight = cached.model.encoders["default"].first.weight
    (grad,) = torch.autograd.grad(cached.training_step(batch, 0), weight, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.pow(2).sum().backward()


class OwnGeneratorDropout(h.DropoutEncoder):
    """Dropout whose mask comes from a generator of its own: the cache cannot replay it."""

    def __init__(self):
        super().__init__("float64")
        self.masks = torch.Generator().manual_seed(5)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        hidden = self.first(batch)
        keep = torch.rand(hidden.shape, generator=self.masks) > 0.5
        return self.second(torch.tanh(hidden * keep.to(hidden.dtype) * 2))


def _replayed_steps(encoder_factory, steps):
    _, cached = _pair("triplet_all", torch.float64, encoders=lambda: {"default": encoder_factory()})
    h.attach_trainer(cached)
    batch = h.first_batch(cached, h.loader_for("triplet_all", torch.float64))
    for _ in range(steps):
        h.cached_step(cached, batch)
    return cached


def test_randomness_the_cache_cannot_replay_is_raised_a_few_steps_later():
    # the verdict of step 1 is read at the start of step 1 + LAG (no host sync in between)
    with pytest.raises(RuntimeError, match=r"training step 1 \(read 2 steps later\).*own torch"):
        _replayed_steps(OwnGeneratorDropout, 3)
    # and at the end of the epoch, for the last steps
    cached = _replayed_steps(OwnGeneratorDropout, 1)
    with pytest.raises(RuntimeError, match="differ from the first pass"):
        cached.on_train_epoch_end()


def test_replayed_dropout_passes_the_replay_check():
    cached = _replayed_steps(lambda: h.DropoutEncoder("float64", dropout=0.5), 4)
    cached.on_train_epoch_end()  # every verdict read: none failed


def test_a_fit_with_randomness_the_cache_cannot_replay_stops_with_the_replay_error():
    _, cached = _pair(
        "triplet_all", torch.float64, encoders=lambda: {"default": OwnGeneratorDropout()}
    )
    loader = h.GroupSimilarityDataLoader(h.group_samples(22, dtype=torch.float64), batch_size=22)
    with pytest.raises(RuntimeError, match="differ from the first pass"):
        Quaterion.fit(cached, trainer(max_epochs=1), loader)  # one step: read at the epoch end
