"""Bad inputs to the training package get a clear error (or warning); edge inputs still work.

One table per boundary. To add a case, add a row: an id, a callable that makes the mistake,
the exception type and words its message must contain (argument, value or index, and fix).
"""

import math
import warnings
from typing import Any, Callable, List, NamedTuple, Tuple

import pytest
import torch
from torch.utils.data import IterableDataset

from quaterion import Quaterion
from quaterion.dataset import (
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
    SimilarityGroupSample,
    SimilarityPairSample,
)
from quaterion.eval.evaluator import Evaluator
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.pair import RetrievalPrecision
from quaterion.eval.samplers.group_sampler import GroupSampler
from quaterion.eval.samplers.pair_sampler import PairSampler
from quaterion.loss import (
    ContrastiveLoss,
    MultipleNegativesRankingLoss,
    OnlineContrastiveLoss,
    TripletLoss,
)
from quaterion.train.cache import CacheConfig
from quaterion.train.callbacks import GuardCallback, NonFiniteLossError
from quaterion.train.xbm import XbmConfig
from tests.quaterion.train.helpers import (
    EMB_DIM,
    IN_DIM,
    CountingEncoder,
    Model,
    assert_weights_of_a_shorter_fit,
    group_loader,
    group_samples,
    pair_loader,
    trainer,
)


class Case(NamedTuple):
    id: str
    action: Callable[[], Any]
    error: type
    words: Tuple[str, ...]


def _run(case: Case) -> None:
    with pytest.raises(case.error) as info:
        case.action()
    message = str(info.value)
    missing = [word for word in case.words if word not in message]
    assert not missing, f"{missing} not in: {message}"


# --- loaders: what a dataset yields -----------------------------------------------------------


def _first_batch(loader_type, samples) -> Callable[[], Any]:
    return lambda: next(iter(loader_type(samples, batch_size=len(samples))))


def _groups(*ids) -> List[SimilarityGroupSample]:
    return [SimilarityGroupSample(obj=f"o{i}", group=g) for i, g in enumerate(ids)]


def _pairs(*rows) -> List[SimilarityPairSample]:
    return [SimilarityPairSample("a", "b", score, subgroup) for score, subgroup in rows]


G, P = GroupSimilarityDataLoader, PairsSimilarityDataLoader
LOADER_CASES = [
    Case(
        "pair-sample-in-group-loader",
        _first_batch(G, _pairs((1.0, 0))),
        TypeError,
        ("GroupSimilarityDataLoader", "SimilarityGroupSample", "item 0", "SimilarityPairSample"),
    ),
    Case(
        "tuple-in-pair-loader",
        _first_batch(P, [("a", "b", 1.0)]),
        TypeError,
        ("PairsSimilarityDataLoader", "SimilarityPairSample", "tuple"),
    ),
    Case("string-group", _first_batch(G, _groups(0, "cat")), TypeError, ("group", "sample 1")),
    Case("float-group", _first_batch(G, _groups(0, 1.5)), TypeError, ("group", "1.5")),
    Case(
        "group-over-int64",
        _first_batch(G, _groups(0, 1, 2**63)),
        ValueError,
        ("group", "int64", "sample 2", str(2**63), "Map ids"),
    ),
    Case(
        "group-under-int64",
        _first_batch(G, _groups(-(2**63) - 1)),
        ValueError,
        ("group", "int64", "sample 0"),
    ),
    Case(
        "nan-score",
        _first_batch(P, _pairs((1.0, 0), (math.nan, 0))),
        ValueError,
        ("score", "finite", "sample 1", "nan"),
    ),
    Case("inf-score", _first_batch(P, _pairs((math.inf, 0))), ValueError, ("score", "inf")),
    Case("string-score", _first_batch(P, _pairs(("high", 0))), TypeError, ("score", "'high'")),
    Case("float-subgroup", _first_batch(P, _pairs((1.0, 0.5))), TypeError, ("subgroup", "0.5")),
    Case(
        "subgroup-not-exact-in-float32",
        _first_batch(P, _pairs((1.0, 0), (1.0, 2**24 + 1))),
        ValueError,
        ("subgroup", "float32", "sample 1", str(2**24 + 1)),
    ),
]


@pytest.mark.parametrize("case", LOADER_CASES, ids=[c.id for c in LOADER_CASES])
def test_loader_rejects(case):
    _run(case)


# --- losses: their own value ranges -----------------------------------------------------------


def _contrastive(scores) -> Callable[[], Any]:
    n = len(scores)
    embeddings = torch.randn(2 * n, 3)
    pairs = torch.stack([torch.arange(n), torch.arange(n) + n], dim=1)
    labels = torch.tensor(scores)
    return lambda: ContrastiveLoss()(embeddings, pairs, labels, torch.zeros(2 * n))


def _mnrl(scores) -> Callable[[], Any]:
    n = len(scores)
    embeddings = torch.randn(2 * n, 3)
    pairs = torch.stack([torch.arange(n), torch.arange(n) + n], dim=1)
    return lambda: MultipleNegativesRankingLoss()(embeddings, pairs, torch.tensor(scores))


LOSS_CASES = [
    Case(
        "contrastive-score-2",
        _contrastive([1.0, 2.0]),
        ValueError,
        ("ContrastiveLoss", "[0, 1]", "pair 1", "2.0"),
    ),
    Case("contrastive-score-negative", _contrastive([-1.0]), ValueError, ("[0, 1]", "-1.0")),
    Case("contrastive-score-nan", _contrastive([0.0, math.nan]), ValueError, ("pair 1", "nan")),
    Case("mnrl-soft-score", _mnrl([1.0, 0.5]), ValueError, ("positive pairs", "ContrastiveLoss")),
    Case(
        "triplet-unknown-mining",
        lambda: TripletLoss(mining="every"),
        ValueError,
        ("mining", "'every'", "'hard'"),
    ),
    Case(
        "contrastive-negative-margin",
        lambda: ContrastiveLoss(margin=-1),
        ValueError,
        ("margin", ">= 0"),
    ),
]


@pytest.mark.parametrize("case", LOSS_CASES, ids=[c.id for c in LOSS_CASES])
def test_loss_rejects(case):
    _run(case)


# --- Quaterion.fit: loaders against the loss, empty data, encoders, non-finite loss ---------


class _EmptyIterable(IterableDataset):
    def __iter__(self):
        return iter([])


class _WideEncoder(CountingEncoder):
    """Says it is EMB_DIM - 1 wide but returns EMB_DIM columns."""

    @property
    def embedding_size(self) -> int:
        return EMB_DIM - 1


def _fit(model=None, train=None, val=None, **trainer_kwargs) -> Callable[[], Any]:
    def action():
        Quaterion.fit(
            model if model is not None else Model(),
            trainer(**trainer_kwargs),
            train if train is not None else group_loader(),
            val,
        )

    return action


def _scored_pairs(*scores) -> List[SimilarityPairSample]:
    data = torch.randn(2 * len(scores), IN_DIM, generator=torch.Generator().manual_seed(0))
    n = len(scores)
    return [
        SimilarityPairSample(data[i], data[n + i], score, i % 2) for i, score in enumerate(scores)
    ]


FIT_CASES = [
    Case(
        "group-loader-with-pairwise-loss",
        _fit(Model(pairs=True), group_loader()),
        NotImplementedError,
        ("train_dataloader", "GroupSimilarityDataLoader", "ContrastiveLoss", "not a GroupLoss"),
    ),
    Case(
        "pair-loader-with-group-loss",
        _fit(Model(), pair_loader()),
        TypeError,
        ("train_dataloader", "PairsSimilarityDataLoader", "TripletLoss", "not a PairwiseLoss"),
    ),
    Case(
        "val-loader-of-wrong-kind",
        _fit(Model(), group_loader(), pair_loader()),
        TypeError,
        ("val_dataloader", "PairsSimilarityDataLoader", "not a PairwiseLoss"),
    ),
    Case("empty-train", _fit(train=group_loader([])), ValueError, ("train_dataloader", "empty")),
    Case(
        "empty-val",
        _fit(val=group_loader([])),
        ValueError,
        ("val_dataloader", "no samples"),
    ),
    Case(
        "drop-last-leaves-no-batch",
        _fit(train=group_loader(group_samples(6), batch_size=8, drop_last=True)),
        ValueError,
        ("train_dataloader", "no batch", "batch_size=8", "drop_last"),
    ),
    Case(
        "empty-iterable-train",
        _fit(train=GroupSimilarityDataLoader(_EmptyIterable(), batch_size=4)),
        ValueError,
        ("train_dataloader", "no batch", "epoch 0"),
    ),
    Case(
        "pair-score-out-of-loss-range",
        _fit(Model(pairs=True), pair_loader(_scored_pairs(1.0, 0.0, 1.0, 2.0))),
        ValueError,
        ("ContrastiveLoss", "[0, 1]", "pair 3", "2.0"),
    ),
    Case(
        "encoder-width-differs-from-embedding-size",
        _fit(Model(encoders={"text": _WideEncoder()})),
        ValueError,
        ("'text'", "_WideEncoder", f"width {EMB_DIM}", f"embedding_size is {EMB_DIM - 1}"),
    ),
    Case(
        "cached-encoder-width-differs",  # caught while the cache is filled
        _fit(Model(encoders={"img": _WideEncoder()}, cache_config=CacheConfig())),
        ValueError,
        ("'img'", f"width {EMB_DIM}", f"embedding_size is {EMB_DIM - 1}"),
    ),
]


FIT_CASES += [
    Case(
        "nan-loss-with-the-default-callbacks",
        lambda: _fit(train=group_loader(_poisoned_samples(24, 9)))(),
        FloatingPointError,
        ("Training loss is nan", "epoch 0, step 1"),
    ),
    Case(
        "mnrl-with-soft-scores",
        _fit(Model(loss=MultipleNegativesRankingLoss()), pair_loader(_scored_pairs(1.0, 0.5))),
        ValueError,
        ("MultipleNegativesRankingLoss", "exactly 1", "pair 1", "0.5"),
    ),
]


@pytest.mark.parametrize("case", FIT_CASES, ids=[c.id for c in FIT_CASES])
def test_fit_rejects(case):
    _run(case)


def test_score_check_runs_on_the_cpu_batch_before_transfer():
    """On a GPU the loss cannot read its labels without a sync: the batch is checked first."""
    model = Model(pairs=True)
    features, labels = {"data": {}}, {"labels": torch.tensor([0.5, -0.1])}
    with pytest.raises(ValueError, match=r"pair 1 of the batch has score -0\.1"):
        model.on_before_batch_transfer((features, labels), 0)
    assert model.on_before_batch_transfer((features, {"labels": torch.ones(2)}), 0)[0] is features


# --- non-finite training loss --------------------------------------------------------------


def _poisoned_samples(n: int, bad_index: int) -> List[SimilarityGroupSample]:
    samples = group_samples(n)
    samples[bad_index] = SimilarityGroupSample(
        obj=torch.full((IN_DIM,), math.nan), group=samples[bad_index].group
    )
    return samples


def _params(model) -> List[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _all_finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


@pytest.mark.parametrize("asynchronous", [False, True], ids=["immediate", "deferred"])
def test_nan_loss_stops_fit_with_finite_weights(asynchronous):
    """NaN in the third batch: the error names epoch 0, step 2; the weights equal those of a
    run that stopped after two batches (plain SGD: a zeroed gradient changes nothing)."""
    bad = Model()
    callbacks = [GuardCallback(asynchronous=asynchronous)]
    with pytest.raises(NonFiniteLossError) as info:
        Quaterion.fit(
            bad, trainer(callbacks=callbacks), group_loader(_poisoned_samples(32, bad_index=17))
        )
    message = str(info.value)
    for words in ("Training loss is nan", "epoch 0, step 2", "batch 2", "check_finite_loss"):
        assert words in message, message
    assert_weights_of_a_shorter_fit(bad, Model, group_samples(32)[:16])


def test_deferred_check_raises_at_the_end_for_the_last_step():
    bad = Model()
    callbacks = [GuardCallback(asynchronous=True)]
    with pytest.raises(NonFiniteLossError, match="epoch 0, step 2"):
        Quaterion.fit(bad, trainer(callbacks=callbacks), group_loader(_poisoned_samples(24, 20)))
    assert _all_finite(bad)


def test_check_finite_loss_false_trains_on():
    class Unchecked(Model):
        check_finite_loss = False

    model = Unchecked()
    Quaterion.fit(model, trainer(), group_loader(_poisoned_samples(24, 3)))
    assert not _all_finite(model)  # the NaN reached the weights: the check really was off


# --- options without effect warn once at fit start -----------------------------------------


def _warnings_of(action) -> List[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


WARN_CASES = [
    (
        "xbm-with-triplet-all",
        dict(loss=TripletLoss(mining="all"), xbm=XbmConfig(start_iteration=0)),
        ("configure_xbm() has no effect", "mining='all'", "ignores the memory"),
    ),
    (
        "xbm-with-loss-without-xbm_loss",
        dict(loss=OnlineContrastiveLoss(), xbm=XbmConfig(start_iteration=100)),
        ("OnlineContrastiveLoss has no xbm_loss", "step 101"),
    ),
    (
        "xbm-weight-zero",
        dict(loss=TripletLoss(), xbm=XbmConfig(weight=0, start_iteration=0)),
        ("weight=0",),
    ),
    (
        "xbm-never-starts",
        dict(loss=TripletLoss(), xbm=XbmConfig(start_iteration=1000)),
        ("start_iteration", "at most 3 steps"),
    ),
    (
        "triplet-soft-without-hard-mining",
        dict(loss=TripletLoss(soft=True, mining="all")),
        ("soft",),
    ),
]


@pytest.mark.parametrize(
    "kwargs, words", [c[1:] for c in WARN_CASES], ids=[c[0] for c in WARN_CASES]
)
def test_ineffective_option_warns_once(kwargs, words):
    messages = _warnings_of(_fit(Model(**kwargs)))
    hits = [m for m in messages if all(word in m for word in words)]
    assert len(hits) == 1, messages


def test_effective_xbm_does_not_warn():
    messages = _warnings_of(
        _fit(Model(loss=TripletLoss(mining="hard"), xbm=XbmConfig(start_iteration=0)))
    )
    assert not [m for m in messages if "configure_xbm" in m or "TripletLoss" in m], messages


# --- metrics -------------------------------------------------------------------------------


METRIC_CASES = [
    Case(
        "group-metric-inf-embedding",
        lambda: RetrievalRPrecision().compute(
            torch.tensor([[0.0, 1.0], [math.inf, 0.0], [1.0, 1.0]]), torch.tensor([0, 0, 1])
        ),
        ValueError,
        ("NaN or inf", "1 of 3 rows", "row 1"),
    ),
    Case(
        "pair-metric-inf-embedding",
        lambda: RetrievalPrecision(k=1).compute(
            torch.tensor([[0.0, 1.0], [1.0, 0.0], [-math.inf, 1.0], [1.0, 1.0]]),
            torch.tensor([1.0, 1.0]),
            torch.tensor([[0, 2], [1, 3]]),
            torch.zeros(4),
        ),
        ValueError,
        ("NaN or inf", "row 2"),
    ),
]


def _evaluate(metric, sampler, dataset) -> Callable[[], Any]:
    return lambda: Quaterion.evaluate(Evaluator(metric, sampler), dataset, Model().model)


METRIC_CASES += [
    Case(
        "evaluate-pairs-with-group-sampler",
        _evaluate(RetrievalRPrecision(), GroupSampler(sample_size=4), _scored_pairs(1.0, 0.0)),
        TypeError,
        ("SimilarityGroupSample", "item 0", "SimilarityPairSample"),
    ),
    Case(
        "evaluate-tuples",
        _evaluate(RetrievalPrecision(k=1), PairSampler(sample_size=4), [("a", "b", 1.0)]),
        TypeError,
        ("SimilarityPairSample", "tuple"),
    ),
    Case(
        "evaluate-empty",
        _evaluate(RetrievalRPrecision(), GroupSampler(sample_size=4), []),
        ValueError,
        ("dataset is empty",),
    ),
]


@pytest.mark.parametrize("case", METRIC_CASES, ids=[c.id for c in METRIC_CASES])
def test_metric_rejects(case):
    _run(case)


# --- valid edge inputs keep working, with correct results ----------------------------------


def test_extreme_but_valid_labels_are_kept_exactly():
    groups = next(iter(G(_groups(2**63 - 1, -(2**63)), batch_size=2)))[2]["groups"]
    assert groups.tolist() == [2**63 - 1, -(2**63)]
    labels = next(iter(P(_pairs((0.0, 2**24), (0.25, -(2**24)), (1.0, 0)), batch_size=3)))[2]
    assert labels["labels"].tolist() == [0.0, 0.25, 1.0]
    assert labels["subgroups"].tolist() == [2**24, -(2**24), 0] * 2


def test_contrastive_accepts_scores_at_the_ends_of_its_range():
    embeddings = torch.randn(4, 3)
    pairs = torch.tensor([[0, 2], [1, 3]])
    loss = ContrastiveLoss(margin=0.5)(embeddings, pairs, torch.tensor([0.0, 1.0]), None)
    d = ContrastiveLoss().distance_metric.distance(embeddings[[0, 1]], embeddings[[2, 3]])
    expected = 0.5 * ((0.5 - d[0]).clamp_min(0) ** 2 + d[1] ** 2) / 2
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize(
    "samples, batch_size",
    [(group_samples(8, groups=8), 4), (group_samples(5), 1)],
    ids=["singleton-groups", "batches-of-one"],
)
def test_fit_on_singleton_groups_and_batches_of_one(samples, batch_size):
    model = Model(loss=TripletLoss(mining="hard"))
    before = _params(model)
    Quaterion.fit(model, trainer(), group_loader(samples, batch_size=batch_size))
    assert _all_finite(model)
    # the loss of a batch without positives still trains (pushes negatives apart) or is a
    # finite constant; either way nothing raised and no weight became NaN
    assert all(p.shape == b.shape for p, b in zip(model.parameters(), before))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_fit_in_float64_and_bfloat16(dtype):
    class Typed(CountingEncoder):
        def get_collate_fn(self):
            return lambda batch: torch.stack([torch.as_tensor(x) for x in batch]).to(dtype)

    model = Model(encoders={"default": Typed()}).to(dtype)
    Quaterion.fit(model, trainer(), group_loader())
    assert all(p.dtype == dtype for p in model.parameters())
    assert _all_finite(model)


def test_save_servable_to_unicode_path_with_spaces(tmp_path):
    from quaterion_models import SimilarityModel

    model = Model()
    Quaterion.fit(model, trainer(), group_loader())
    path = tmp_path / "my models" / "модель ✓"
    model.save_servable(str(path))
    inputs = [torch.randn(IN_DIM) for _ in range(3)]
    expected = model.model.encode(inputs, to_numpy=False)
    torch.testing.assert_close(
        SimilarityModel.load(str(path)).encode(inputs, to_numpy=False), expected
    )


def test_resume_from_a_checkpoint_at_the_end_of_an_epoch(tmp_path):
    """The resumed epoch has no batch left to read: that is not an empty loader."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    checkpoint = ModelCheckpoint(
        dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1, save_on_train_epoch_end=False
    )
    first = trainer(callbacks=[checkpoint], enable_checkpointing=True)
    Quaterion.fit(Model(), first, group_loader())  # 24 samples, batch 8: 3 steps an epoch
    resumed = trainer(max_epochs=2)
    Quaterion.fit(Model(), resumed, group_loader(), ckpt_path=str(tmp_path / "epoch=0-step=3.ckpt"))
    assert resumed.global_step == 6
