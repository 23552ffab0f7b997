import random

import numpy as np
import pytest
import torch

from quaterion.dataset.similarity_samples import SimilarityGroupSample, SimilarityPairSample
from quaterion.distances import Manhattan
from quaterion.eval.evaluator import Evaluator
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank
from quaterion.eval.samplers import GroupSampler, PairSampler
from quaterion.eval.samplers.base_sampler import BaseSampler


class _DenseMetric(RetrievalPrecision):
    """Has no block reducer: the evaluator gives it the dense matrices of the shared draw."""

    def block_reducer(self):
        return None


def test_pair_evaluation_and_reset(pair_dataset, model3):
    sampler = PairSampler(log_progress=False)
    result = Evaluator(
        metrics={"rrk": RetrievalReciprocalRank("euclidean")}, sampler=sampler
    ).evaluate(pair_dataset, model3)
    assert result == {"rrk": 1.0}
    assert not sampler.accumulator.filled


def test_single_metric_keyed_by_class_name(group_dataset, model3):
    result = Evaluator(RetrievalRPrecision(), GroupSampler(log_progress=False)).evaluate(
        group_dataset, model3
    )
    assert list(result) == ["RetrievalRPrecision"] and result["RetrievalRPrecision"].item() == 1.0


def _pair_data():
    return [
        SimilarityPairSample(
            torch.randint(0, 3, (3,)).tolist(),
            torch.randint(0, 3, (3,)).tolist(),
            float(torch.randint(0, 3, ()).item()) / 2,
            0,
        )
        for _ in range(9)
    ]


def test_blocked_path_equals_sample_path_draw_for_draw(seeded, set_block_rows, model3):
    data = _pair_data()
    metrics = {
        "p": RetrievalPrecision(2, "manhattan", reduce_func=None),
        "rr": RetrievalReciprocalRank("manhattan", reduce_func=None),
    }
    for distinguish in (False, True):
        for rows in (1, 3, 18):
            set_block_rows(rows, 18)
            random.seed(1)
            sampler = PairSampler(7, distinguish, log_progress=False)
            together = Evaluator(metrics, sampler).evaluate(data, model3)
            for name, metric in metrics.items():
                random.seed(1)
                alone = Evaluator({name: metric}, sampler).evaluate(data, model3)
                random.seed(1)
                dense = metric.raw_compute(*reversed(sampler.sample(data, metric, model3)))
                sampler.reset()
                torch.testing.assert_close(together[name], dense)
                torch.testing.assert_close(alone[name], dense)


def test_metrics_share_one_draw_and_one_distance_pass(seeded, model3, monkeypatch):
    data = _pair_data()
    passes = []
    original = Manhattan.distance_matrix_blocks

    def counted(x, y, block_rows):
        passes.append(x.shape[0])
        return original(x, y, block_rows)

    monkeypatch.setattr(Manhattan, "distance_matrix_blocks", counted)
    metrics = {
        "p1": RetrievalPrecision(1, "manhattan", reduce_func=None),
        "p2": RetrievalPrecision(2, "manhattan", reduce_func=None),
        "rr": RetrievalReciprocalRank("manhattan", reduce_func=None),
        "dense": _DenseMetric(2, "manhattan", reduce_func=None),
    }
    result = Evaluator(metrics, PairSampler(7, log_progress=False)).evaluate(data, model3)
    assert passes == [7]  # one blocked pass for the three metrics with a reducer
    torch.testing.assert_close(result["dense"], result["p2"])


def test_custom_sampler_without_draw_uses_sample(group_dataset, model3):
    class SampleOnly(GroupSampler):
        def draw(self, dataset, model):
            return None

        def sample(self, dataset, metric, model):
            return super().draw(dataset, model).dense(metric.distance)

    result = Evaluator(RetrievalRPrecision(), SampleOnly(log_progress=False)).evaluate(
        group_dataset, model3
    )
    assert result["RetrievalRPrecision"].item() == 1.0


def test_repeats_give_mean_and_std(seeded, model3):
    data = [
        SimilarityGroupSample(torch.randn(3).tolist(), int(g)) for g in torch.randint(0, 3, (20,))
    ]
    metric = RetrievalRPrecision()
    random.seed(2)
    result = Evaluator(
        {"rp": metric}, GroupSampler(sample_size=5, log_progress=False), repeats=4
    ).evaluate(data, model3)
    random.seed(2)
    sampler = GroupSampler(sample_size=5, log_progress=False)
    singles = torch.stack(
        [metric.raw_compute(*reversed(sampler.sample(data, metric, model3))) for _ in range(4)]
    )
    assert set(result) == {"rp", "rp_std"}
    torch.testing.assert_close(result["rp"], singles.mean())
    torch.testing.assert_close(result["rp_std"], singles.std())


@pytest.mark.parametrize(
    "metric", [RetrievalPrecision(reduce_func=None), RetrievalReciprocalRank(reduce_func=None)]
)
def test_repeats_of_per_query_vectors_are_refused(metric):
    # position j of two repeats is two different random queries: no mean to take
    with pytest.raises(ValueError, match=r"averages one number per metric.*reduce_func=None"):
        Evaluator({"v": metric}, PairSampler(3, log_progress=False), repeats=2)
    assert Evaluator({"v": metric}, PairSampler(3, log_progress=False)).repeats == 1


def test_repeats_of_a_custom_vector_reduction_fail_naming_the_metric(pair_dataset, model3):
    metric = RetrievalPrecision(reduce_func=lambda values: values[:2])
    evaluator = Evaluator({"first two": metric}, PairSampler(3, log_progress=False), repeats=2)
    with pytest.raises(ValueError, match=r"'first two' gave a tensor of shape \(2,\)"):
        evaluator.evaluate(pair_dataset, model3)
    assert not evaluator.sampler.accumulator.filled  # reset after the failure


def test_per_query_vector_of_separable_pairs_is_all_ones(pair_dataset, model3):
    random.seed(4)
    result = Evaluator(
        RetrievalPrecision(reduce_func=None, distance_metric_name="euclidean"),
        PairSampler(3, log_progress=False),
    ).evaluate(pair_dataset, model3)["RetrievalPrecision"]
    # partners are 1 apart, other pairs at least 2 apart: every query's nearest is its partner
    torch.testing.assert_close(result, torch.ones(3))


def test_empty_metrics_are_refused():
    with pytest.raises(ValueError, match="metrics is empty"):
        Evaluator({}, GroupSampler())


def test_metric_names_clashing_with_std_keys_are_refused_with_repeats():
    metrics = {"rp": RetrievalRPrecision(), "rp_std": RetrievalRPrecision("euclidean")}
    with pytest.raises(ValueError, match=r"\['rp_std'\] clash"):
        Evaluator(metrics, GroupSampler(), repeats=3)
    assert set(Evaluator(metrics, GroupSampler()).metrics) == {"rp", "rp_std"}


@pytest.mark.parametrize(
    "device, error, words",
    [("nope", ValueError, "device 'nope' is not a device torch knows"), (1.5, TypeError, "float")],
)
def test_sampler_device_checked_at_construction(device, error, words):
    for sampler in (GroupSampler, PairSampler):
        with pytest.raises(error, match=words):
            sampler(device=device)


@pytest.mark.parametrize("repeats", [0, -2, 1.5])
def test_bad_repeats(repeats):
    with pytest.raises(ValueError, match="repeats must be an int >= 1"):
        Evaluator(RetrievalRPrecision(), GroupSampler(), repeats=repeats)


def test_mismatched_metric_fails_at_construction():
    with pytest.raises(TypeError, match="GroupSampler cannot evaluate RetrievalReciprocalRank"):
        Evaluator({"rr": RetrievalReciprocalRank()}, GroupSampler())


def test_empty_dataset(model3):
    with pytest.raises(ValueError, match="dataset is empty"):
        Evaluator(RetrievalRPrecision(), GroupSampler(log_progress=False)).evaluate([], model3)


def test_base_sampler_contract():
    sampler = BaseSampler()
    assert (sampler.sample_size, sampler.device, sampler.log_progress) == (-1, None, True)
    assert sampler.sample([], RetrievalRPrecision(), None) is None and sampler.reset() is None


class _SpyModel:
    """Wraps a model and records the size of every encode call."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def encode(self, objs, batch_size, to_numpy):
        self.calls.append((len(objs), batch_size, to_numpy))
        return self.model.encode(objs, batch_size=batch_size, to_numpy=to_numpy)


def test_dataset_encoded_once_in_batches(group_dataset, model3):
    spy = _SpyModel(model3)
    metrics = {"a": RetrievalRPrecision(), "b": RetrievalRPrecision("euclidean")}
    sampler = GroupSampler(encode_batch_size=4, log_progress=False)
    result = Evaluator(metrics, sampler, repeats=2).evaluate(group_dataset, spy)
    assert spy.calls == [(4, 4, False), (2, 4, False)]
    assert set(result) == {"a", "a_std", "b", "b_std"}


def test_pair_batches_hold_half_the_objects(pair_dataset, model3):
    spy = _SpyModel(model3)
    Evaluator(RetrievalPrecision(), PairSampler(encode_batch_size=4, log_progress=False)).evaluate(
        pair_dataset, spy
    )
    assert spy.calls == [(4, 4, False), (4, 4, False)]


class _FixedOutputModel:
    """A model whose ``encode`` returns ``output(objects)``."""

    def __init__(self, output):
        self.output = output

    def encode(self, objs, batch_size, to_numpy):
        return self.output(objs)


def test_numpy_output_of_encode_equals_the_tensor_output(group_dataset, model3):
    numpy_model = _FixedOutputModel(lambda objs: model3.encode(objs, to_numpy=True))
    metric = RetrievalRPrecision("euclidean")
    expected = Evaluator(metric, GroupSampler(log_progress=False)).evaluate(group_dataset, model3)
    assert expected == {"RetrievalRPrecision": 1.0}  # three well separated groups of two
    result = Evaluator(metric, GroupSampler(log_progress=False)).evaluate(
        group_dataset, numpy_model
    )
    assert result == expected


@pytest.mark.parametrize(
    "output, error, words",
    [
        (lambda objs: objs, TypeError, "must return a torch.Tensor .* got list"),
        (lambda objs: torch.tensor(objs)[:1], ValueError, r"object \(6\), got shape \(1, 3\)"),
    ],
)
def test_bad_encode_output_is_named(group_dataset, output, error, words):
    evaluator = Evaluator(RetrievalRPrecision(), GroupSampler(log_progress=False))
    with pytest.raises(error, match=f"_FixedOutputModel.encode.*{words}"):
        evaluator.evaluate(group_dataset, _FixedOutputModel(output))


def test_numpy_integers_are_accepted_as_sizes(group_dataset, model3):
    sampler = GroupSampler(
        sample_size=np.int64(4), encode_batch_size=np.int32(4), log_progress=False
    )
    evaluator = Evaluator(RetrievalRPrecision("euclidean"), sampler, repeats=np.int64(2))
    assert (sampler.sample_size, sampler.encode_batch_size, evaluator.repeats) == (4, 4, 2)
    assert type(sampler.sample_size) is int and RetrievalPrecision(k=np.int64(3)).k == 3
    result = evaluator.evaluate(group_dataset, model3)
    assert result == {"RetrievalRPrecision": 1.0, "RetrievalRPrecision_std": 0.0}
