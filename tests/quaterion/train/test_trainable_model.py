"""TrainableModel construction, hooks, step flow and XBM wiring."""

import pytest
import torch

from quaterion import Quaterion, TrainableModel
from quaterion.dataset.train_collator import TrainCollator
from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.loss import ContrastiveLoss, TripletLoss
from quaterion.train.cache import CacheType
from quaterion.train.xbm import XbmConfig, XbmDevice
from quaterion_models.heads import GatedHead
from quaterion.utils.enums import TrainStage
from tests.quaterion.train.helpers import (
    CountingEncoder,
    LossRecorder,
    Model,
    RecordingTriplet,
    group_loader,
    pair_loader,
    trainer,
)


class _Stub(TrainableModel):
    def __init__(self, metrics):
        self._stub_metrics = metrics
        super().__init__()

    def configure_encoders(self):
        return CountingEncoder()

    def configure_head(self, input_embedding_size):
        return None

    def configure_loss(self):
        return None

    def configure_metrics(self):
        return self._stub_metrics


@pytest.mark.parametrize("count", [0, 1, 2])
def test_attached_metrics_with_stub_hooks(count):
    metrics = [AttachedMetric(f"m{i}", RetrievalRPrecision()) for i in range(count)]
    value = metrics[0] if count == 1 else metrics
    model = _Stub(value)
    assert len(model.attached_metrics) == count
    assert model.loss is None
    assert _Stub(None).attached_metrics == []
    assert model.cache_config.cache_type is CacheType.NONE


@pytest.mark.parametrize(
    "hook, value, match",
    [
        ("configure_encoders", lambda self: "text", "configure_encoders.*str"),
        ("configure_encoders", lambda self: {"a": 1}, "configure_encoders.*'a'.*int"),
        ("configure_head", lambda self, size: torch.nn.Linear(size, 2), "configure_head.*Linear"),
        ("configure_loss", lambda self: torch.nn.MSELoss(), "configure_loss.*MSELoss"),
        ("configure_caches", lambda self: {"cache_type": "auto"}, "configure_caches.*dict"),
        (
            "configure_metrics",
            lambda self: [RetrievalRPrecision()],
            "configure_metrics.*RetrievalRPrecision",
        ),
        ("configure_xbm", lambda self: 5, "configure_xbm.*int"),
    ],
)
def test_wrong_hook_types_name_hook_and_type(hook, value, match):
    broken = type("Broken", (Model,), {hook: value})
    with pytest.raises(TypeError, match=match):
        broken()


def test_hook_order_and_properties():
    order = []

    class Ordered(Model):
        def configure_encoders(self):
            order.append("encoders")
            return super().configure_encoders()

        def configure_caches(self):
            order.append("caches")
            return super().configure_caches()

        def configure_head(self, input_embedding_size):
            order.append(("head", input_embedding_size))
            return super().configure_head(input_embedding_size)

        def configure_metrics(self):
            order.append("metrics")
            return super().configure_metrics()

        def configure_loss(self):
            order.append(("loss", self.model is not None))
            return super().configure_loss()

        def configure_xbm(self):
            order.append("xbm")
            return super().configure_xbm()

    model = Ordered(encoders={"a": CountingEncoder(size=3), "b": CountingEncoder(size=5)})
    assert order == ["encoders", "caches", ("head", 8), "metrics", ("loss", True), "xbm"]
    assert model.model is model._model and model.loss is model._loss
    assert not model.model.encoders["a"].linear.weight.requires_grad


def test_setup_dataloader_is_idempotent():
    model = Model()
    loader = group_loader()
    pre_collate = loader.original_params["collate_fn"]
    for _ in range(3):
        model.setup_dataloader(loader)
        assert isinstance(loader.collate_fn, TrainCollator)
        assert loader.collate_fn.pre_collate_fn is pre_collate
    features, labels = next(iter(loader))
    assert features["data"]["default"].shape == (8, 4) and labels["groups"].shape == (8,)


def test_process_results_receives_step_values():
    seen = []

    class Recording(Model):
        def process_results(self, embeddings, targets, batch_idx, stage, **kwargs):
            seen.append((stage, batch_idx, tuple(embeddings.shape), sorted(targets), kwargs))

    Quaterion.fit(Recording(), trainer(), group_loader(), group_loader())
    train = [s for s in seen if s[0] == TrainStage.TRAIN]
    val = [s for s in seen if s[0] == TrainStage.VALIDATION]
    assert [s[1] for s in train] == [0, 1, 2] and len(val) == 3
    assert train[0][2] == (8, 6) and train[0][3] == ["groups"]


class _Float64Head(GatedHead):
    """A head whose output is float64, while the XBM buffer stores float32."""

    def transform(self, input_vectors):
        return super().transform(input_vectors).double()


def _fit_with_xbm(start_iteration: int, head=GatedHead):
    """One epoch (3 steps, lr=0) with XBM of weight 0.5 and a recording hard-mining triplet loss.

    Returns the model, the loss, every training step's ``(global_step, embeddings, groups)``
    and the loss recorded at every step.
    """
    loss = RecordingTriplet(mining="hard")
    config = XbmConfig(
        weight=0.5, buffer_size=100, start_iteration=start_iteration, device=XbmDevice.CPU
    )
    steps = []

    class Xbm(Model):
        def configure_head(self, input_embedding_size):
            torch.manual_seed(0)
            return head(input_embedding_size)

        def process_results(self, embeddings, targets, batch_idx, stage, **kwargs):
            if stage == TrainStage.TRAIN:
                steps.append((self.trainer.global_step, embeddings.detach(), targets["groups"]))

    model = Xbm(xbm=config, loss=loss, lr=0.0)
    recorder = LossRecorder()
    Quaterion.fit(model, trainer(callbacks=[recorder]), group_loader())
    assert [step for step, _, _ in steps] == [0, 1, 2]
    return model, loss, steps, recorder.losses


def test_xbm_starts_after_start_iteration_and_adds_weighted_term():
    model, loss, steps, losses = _fit_with_xbm(start_iteration=1)
    # steps 0 and 1 (global_step <= start_iteration): no XBM; step 2: empty memory
    assert [groups.numel() for _, groups in loss.memories] == [0]
    _, embeddings, groups = steps[2]
    memory, memory_groups = model._xbm_buffer.get()
    torch.testing.assert_close(memory, embeddings)
    assert torch.equal(memory_groups, groups)
    # lr=0: the recorded loss equals plain loss + 0.5 * xbm_loss(empty) = plain loss
    plain = TripletLoss(mining="hard")(embeddings=embeddings, groups=groups)
    torch.testing.assert_close(losses[2], plain)


@pytest.mark.parametrize(
    "head, dtype",
    [
        pytest.param(GatedHead, torch.float32, id="float32-head"),
        # the float32 buffer hands float64 batches their memory cast to float64
        pytest.param(_Float64Head, torch.float64, id="float64-head"),
    ],
)
def test_xbm_term_uses_memory_after_first_xbm_step(head, dtype):
    _, loss, steps, losses = _fit_with_xbm(start_iteration=0, head=head)
    assert all(emb.dtype == dtype for _, emb, _ in steps)
    # step 0: no XBM (global_step == start_iteration); step 1: empty memory; step 2: batch 1
    assert [groups.numel() for _, groups in loss.memories] == [0, 8]
    (_, emb1, g1), (_, emb2, g2) = steps[1], steps[2]
    reference = TripletLoss(mining="hard")
    memory = emb1.float().to(dtype)  # what the float32 buffer hands back, in the batch dtype
    expected = reference(embeddings=emb2, groups=g2) + 0.5 * reference.xbm_loss(
        emb2, g2, memory, g1
    )
    torch.testing.assert_close(losses[2], expected)


def test_xbm_with_pairwise_loss_fails_clearly():
    config = XbmConfig(start_iteration=0, buffer_size=10, device=XbmDevice.CPU)
    model = Model(xbm=config, pairs=True, loss=ContrastiveLoss())
    with pytest.raises(NotImplementedError, match="XBM is currently supported only with GroupLoss"):
        Quaterion.fit(model, trainer(max_epochs=1), pair_loader())
