"""Loaders with persistent workers: the workers keep the collate_fn they were started with,
so a loader whose collate changed since (iterated before a fit, or by hand) is refused
instead of collating with the old one; fits that start and stop the workers keep working."""

import pytest
import torch

from quaterion import Quaterion
from tests.quaterion.train.helpers import (
    CountingEncoder,
    Model,
    fit_losses,
    group_loader,
    stack_collate,
    trainer,
)

PERSISTENT = dict(shuffle=False, num_workers=1, persistent_workers=True)


class ScaledEncoder(CountingEncoder):
    """CountingEncoder whose collate multiplies the records by 100 (another collate)."""

    def get_collate_fn(self):
        return scaled_collate


def scaled_collate(batch):
    return stack_collate(batch) * 100


def test_iterating_before_a_fit_is_refused_in_the_fit_with_the_fix():
    loader = group_loader(**PERSISTENT)
    next(iter(loader))  # the workers start with the pre-collate function
    with pytest.raises(
        RuntimeError, match="persistent workers were started.*persistent_workers=False"
    ):
        Quaterion.fit(Model(), trainer(), loader, None)


def test_a_collate_changed_by_hand_after_an_iteration_is_refused():
    loader = group_loader(**PERSISTENT)
    next(iter(loader))
    with pytest.raises(RuntimeError, match="instead of scaled_collate"):
        loader.collate_fn = scaled_collate


def test_two_fits_on_one_persistent_loader_equal_fits_on_fresh_loaders():
    loader = group_loader(**PERSISTENT)
    first = fit_losses(Model(), loader, None)
    second = fit_losses(Model(encoders={"default": ScaledEncoder()}), loader, None)
    torch.testing.assert_close(first, fit_losses(Model(), group_loader(shuffle=False), None))
    expected = fit_losses(Model(encoders={"default": ScaledEncoder()}), group_loader(shuffle=False))
    torch.testing.assert_close(second, expected)
    # plain iteration after the fits: the restored collator of the last model
    features, labels = next(iter(loader))
    reference = group_loader(shuffle=False)
    fit_losses(Model(encoders={"default": ScaledEncoder()}), reference, None)
    expected_features, expected_labels = next(iter(reference))
    torch.testing.assert_close(features["data"], expected_features["data"])
    torch.testing.assert_close(labels, expected_labels)
