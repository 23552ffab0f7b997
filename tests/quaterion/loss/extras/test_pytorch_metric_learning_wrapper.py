"""PytorchMetricLearningWrapper: delegation to PML, miner use, errors, optional-dependency import."""

import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.miners import BaseMiner

from quaterion.loss.extras import PytorchMetricLearningWrapper
from tests._run import run_python

REPO_ROOT = Path(__file__).resolve().parents[4]


def naive_triplet_margin(emb, groups, margin, triplets=None):
    """PML TripletMarginLoss defaults: L2 on normalised rows, mean over non-zero losses."""
    normed = F.normalize(emb.double(), dim=1)
    labels = groups.tolist()
    if triplets is None:
        triplets = [
            (a, p, n)
            for a, p, n in itertools.permutations(range(len(labels)), 3)
            if labels[a] == labels[p] and labels[a] != labels[n]
        ]
    values = []
    for a, p, n in triplets:
        d_ap = torch.dist(normed[a], normed[p]).item()
        d_an = torch.dist(normed[a], normed[n]).item()
        values.append(max(d_ap - d_an + margin, 0.0))
    positive = [v for v in values if v > 0]
    return sum(positive) / len(positive) if positive else 0.0


class _FixedTripletMiner(BaseMiner):
    """Returns one fixed triplet, so the wrapper's use of the miner is observable."""

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        return (torch.tensor([0]), torch.tensor([5]), torch.tensor([1]))


def _batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    groups = torch.tensor([0, 1, 2, 0, 1, 0, 2, 1])
    return emb, groups


def test_spec_example_returns_scalar_with_gradient():
    emb = torch.randn(16, 5, requires_grad=True)
    groups = torch.randint(0, 4, (16,))
    wrapper = PytorchMetricLearningWrapper(
        losses.TripletMarginLoss(), miners.MultiSimilarityMiner()
    )
    loss = wrapper(emb, groups)
    assert loss.shape == ()
    loss.backward()
    assert torch.isfinite(emb.grad).all()


def test_without_miner_matches_naive_triplet_margin():
    emb, groups = _batch()
    loss = PytorchMetricLearningWrapper(losses.TripletMarginLoss(margin=0.3))(emb, groups)
    expected = naive_triplet_margin(emb, groups, 0.3)
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64))


def test_miner_output_is_passed_as_indices_tuple():
    emb, groups = _batch(1)
    wrapper = PytorchMetricLearningWrapper(
        losses.TripletMarginLoss(margin=5.0), _FixedTripletMiner()
    )
    expected = naive_triplet_margin(emb, groups, 5.0, triplets=[(0, 5, 1)])
    torch.testing.assert_close(wrapper(emb, groups), torch.tensor(expected, dtype=torch.float64))
    all_triplets = naive_triplet_margin(emb, groups, 5.0)
    assert abs(expected - all_triplets) > 1e-6  # the miner changed the result


def test_children_and_config():
    pml_loss, miner = losses.ContrastiveLoss(), miners.MultiSimilarityMiner()
    wrapper = PytorchMetricLearningWrapper(pml_loss, miner)
    assert wrapper._loss is pml_loss and wrapper._miner is miner
    assert dict(wrapper.named_children()) == {"_loss": pml_loss, "_miner": miner}
    assert wrapper.get_config_dict() == {"distance_metric_name": "cosine"}
    with pytest.raises(NotImplementedError, match="PytorchMetricLearningWrapper"):
        wrapper.xbm_loss(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2, 3), torch.zeros(2))


def test_learned_pml_parameters_are_registered():
    wrapper = PytorchMetricLearningWrapper(losses.ArcFaceLoss(num_classes=3, embedding_size=4))
    assert [name for name, _ in wrapper.named_parameters()] == ["_loss.W"]


@pytest.mark.parametrize(
    "args, needle",
    [
        ((torch.nn.MSELoss(),), "BaseMetricLossFunction"),
        ((losses.TripletMarginLoss(), "hard"), "BaseMiner"),
    ],
)
def test_wrong_types_raise_type_error(args, needle):
    with pytest.raises(TypeError, match=needle):
        PytorchMetricLearningWrapper(*args)


@pytest.mark.parametrize(
    "embeddings, groups, needle",
    [
        (torch.randn(4, 3), [0, 0, 1, 1], "groups"),
        (torch.randn(4, 3), torch.tensor([0, 0, 1, 1]).numpy(), "groups"),
        (torch.randn(4, 3).numpy(), torch.tensor([0, 0, 1, 1]), "embeddings"),
    ],
)
def test_inputs_that_are_not_tensors_are_named(embeddings, groups, needle):
    loss = PytorchMetricLearningWrapper(losses.TripletMarginLoss())
    with pytest.raises(TypeError, match=needle):
        loss(embeddings, groups)


def test_quaterion_loss_imports_without_pytorch_metric_learning():
    code = (
        "import sys\n"
        "sys.modules['pytorch_metric_learning'] = None\n"
        "import quaterion.loss\n"
        "from quaterion.loss import circle_loss, fast_ap_loss, arcface_loss, cos_face_loss\n"
        "from quaterion.loss import softmax_loss, center_loss\n"
        "try:\n"
        "    import quaterion.loss.extras\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('extras imported without pytorch-metric-learning')\n"
    )
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
