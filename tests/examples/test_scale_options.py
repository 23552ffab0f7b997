"""``--devices`` / ``--num-nodes`` of the cars and cifar100 scripts reach the trainer."""

import argparse

import pytest

from examples import training
from examples.cars import train as cars_train
from examples.cifar100 import cli as cifar100_cli
from examples.cifar100 import train_simple, train_with_pytorch_metric_learning, train_with_xbm
from tests.examples.cifar100.conftest import SMALL_RUN
from tests.quaterion.train.helpers import Model, group_loader


def test_scale_args_parse_and_reject_non_positive(capsys):
    parser = argparse.ArgumentParser()
    training.add_scale_args(parser)
    assert vars(parser.parse_args([])) == {"devices": 1, "num_nodes": 1}
    assert vars(parser.parse_args(["--devices", "2", "--num-nodes", "3"])) == {
        "devices": 2,
        "num_nodes": 3,
    }
    with pytest.raises(SystemExit):
        parser.parse_args(["--devices", "0"])
    assert "positive integer" in capsys.readouterr().err


@pytest.mark.parametrize(
    "devices, num_nodes, strategy", [(1, 1, None), (2, 1, "ddp"), (1, 2, "ddp"), (4, 2, "ddp")]
)
def test_trainer_options_select_ddp_for_several_processes(devices, num_nodes, strategy):
    options = training.trainer_options(Model(), group_loader(), 3, devices, num_nodes)
    assert (options["devices"], options["num_nodes"], options["max_epochs"]) == (
        devices,
        num_nodes,
        3,
    )
    assert options.get("strategy") == strategy
    # the rest of the defaults (early stopping, progress bar) is kept
    assert any(type(cb).__name__ == "EarlyStopping" for cb in options["callbacks"])


def test_cars_train_passes_devices_and_nodes(monkeypatch):
    seen = {}
    monkeypatch.setattr(cars_train, "train", lambda **kwargs: seen.update(kwargs))
    cars_train.main(["--synthetic", "--devices", "2", "--num-nodes", "3"])
    assert (seen["devices"], seen["num_nodes"]) == (2, 3)


@pytest.mark.parametrize(
    "script", [train_simple, train_with_pytorch_metric_learning, train_with_xbm]
)
def test_cifar100_scripts_pass_devices_and_nodes(script, workdir, no_network, monkeypatch):
    seen = {}

    def fake_fit(model, train, val, epochs, devices=1, num_nodes=1):
        seen.update(devices=devices, num_nodes=num_nodes)

    monkeypatch.setattr(cifar100_cli, "fit", fake_fit)
    script.main(SMALL_RUN + ["--devices", "2", "--num-nodes", "2"])
    assert seen == {"devices": 2, "num_nodes": 2}
