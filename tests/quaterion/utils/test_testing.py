"""``count_host_syncs`` counts exactly the operations that make the host wait."""

import pytest
import torch

from quaterion.utils.testing import count_host_syncs, count_step_syncs

x = torch.tensor([1.0, -2.0, 3.0, 0.5])
mask = x > 0
counts = torch.tensor([0, 2, 1, 1])

SYNCING = [
    ("item", lambda: x.sum().item(), "aten._local_scalar_dense"),
    ("bool", lambda: bool(mask.any()), "aten._local_scalar_dense"),
    ("int", lambda: int(counts.max()), "aten._local_scalar_dense"),
    ("float", lambda: float(x[0]), "aten._local_scalar_dense"),
    ("mask index", lambda: x[mask], "aten.index"),
    ("mask index 2-d", lambda: torch.ones(4, 2)[mask], "aten.index"),
    ("mask assignment", lambda: x.clone().__setitem__(mask, 0.0), "aten.index_put_"),
    ("nonzero", lambda: mask.nonzero(), "aten.nonzero"),
    ("where one argument", lambda: torch.where(mask), "aten.nonzero"),
    ("masked_select", lambda: x.masked_select(mask), "aten.masked_select"),
    ("unique", lambda: counts.unique(), "aten._unique2"),
    ("unique_consecutive", lambda: counts.unique_consecutive(), "aten.unique_consecutive"),
    ("unique dim", lambda: counts[:, None].unique(dim=0), "aten.unique_dim"),
    ("repeat_interleave", lambda: x.repeat_interleave(counts), "aten.repeat_interleave"),
    ("repeat_interleave counts", lambda: torch.repeat_interleave(counts), "aten.repeat_interleave"),
    ("equal", lambda: torch.equal(x, x), "aten.equal"),
    ("allclose", lambda: torch.allclose(x, x), "aten.allclose"),
    ("bincount", lambda: torch.bincount(counts), "aten.bincount"),
]

NOT_SYNCING = [
    ("integer index", lambda: x[counts]),
    ("masked_fill", lambda: x.masked_fill(mask, 0.0)),
    ("where three arguments", lambda: torch.where(mask, x, 0.0)),
    ("repeat_interleave int", lambda: x.repeat_interleave(2)),
    ("repeat_interleave output_size", lambda: x.repeat_interleave(counts, output_size=4)),
    ("any", lambda: mask.any()),
    ("sort", lambda: torch.sort(x, stable=True)),
    ("scatter", lambda: torch.zeros(4).scatter_(0, counts, x)),
    ("shape", lambda: x.shape[0] + len(x)),
]


@pytest.mark.parametrize("name,op,expected", SYNCING, ids=[c[0] for c in SYNCING])
def test_each_syncing_operation_counts_once(name, op, expected):
    with count_host_syncs() as syncs:
        op()
    assert (syncs.total, dict(syncs.by_op)) == (1, {expected: 1})


@pytest.mark.parametrize("name,op", NOT_SYNCING, ids=[c[0] for c in NOT_SYNCING])
def test_device_only_operations_count_zero(name, op):
    with count_host_syncs() as syncs:
        op()
    assert syncs.total == 0, syncs


def test_nested_blocks_both_count_and_the_count_stops_at_exit():
    with count_host_syncs() as outer:
        float(x[0])
        with count_host_syncs() as inner:
            x[mask]
    float(x[1])
    assert (outer.total, inner.total) == (2, 1)
    assert dict(outer.by_op) == {"aten._local_scalar_dense": 1, "aten.index": 1}


class Stepper:
    def training_step(self, value):
        return float(value) + float(value)

    def validation_step(self, value):
        return value * 2


def test_count_step_syncs_counts_each_call_and_restores_the_method():
    stepper = Stepper()
    with count_step_syncs(stepper) as steps:
        assert stepper.training_step(x[0]) == 2.0
        stepper.training_step(x[1])
        stepper.validation_step(x)
    assert [c.total for c in steps["training_step"]] == [2, 2]
    assert [c.total for c in steps["validation_step"]] == [0]
    assert "training_step" not in vars(stepper)
    assert stepper.training_step(x[0]) == 2.0


def test_count_step_syncs_refuses_an_already_wrapped_object():
    stepper = Stepper()
    with count_step_syncs(stepper):
        with pytest.raises(ValueError, match="already replaced"):
            with count_step_syncs(stepper):
                pass
    assert "training_step" not in vars(stepper)


def test_count_step_syncs_names_a_missing_hook_and_wraps_nothing():
    stepper = Stepper()
    with pytest.raises(AttributeError, match="test_step"):
        with count_step_syncs(stepper, hooks=("training_step", "test_step")):
            pass
    assert "training_step" not in vars(stepper)
