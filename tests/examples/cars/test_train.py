"""End-to-end tests of ``python -m examples.cars.train`` on synthetic data (tiny backbone)."""

import functools
import os
import subprocess
import sys

import pytest
import torch
import torchvision

from examples.cars import train as cars_train
from examples.cars.config import (
    HEAD_DROPOUT,
    IMAGE_SIZE,
    SYNTHETIC_BATCH_SIZE,
    SYNTHETIC_EPOCHS,
    SYNTHETIC_IMAGE_SIZE,
)
from examples.cars.models import Model
from quaterion_models import SimilarityModel

from .conftest import INPUT_SIZE, TinyResNet, train_argv

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def test_servable_loads_and_encodes_to_2048(trained_cars):
    save_dir = trained_cars["save_dir"]
    for name in ("config.json", "head/config.json", "head/weights.bin",
                 "encoders/default/encoder.pth", "encoders/default/config.json"):  # fmt: skip
        assert (save_dir / name).is_file(), name
    model = SimilarityModel.load(str(save_dir))
    images = [torch.randn(3, INPUT_SIZE, INPUT_SIZE) for _ in range(5)]
    embeddings = model.encode(images, to_numpy=False)
    assert embeddings.shape == (5, 2048)
    assert torch.isfinite(embeddings).all()
    # The loaded servable computes what the trained model computes.
    trained = trained_cars["model"].model.eval()
    expected = trained.encode(images, to_numpy=False)
    torch.testing.assert_close(embeddings, expected)


def test_encoder_state_is_a_plain_state_dict(trained_cars):
    state = torch.load(
        trained_cars["save_dir"] / "encoders/default/encoder.pth",
        map_location="cpu",
        weights_only=True,
    )
    reference = TinyResNet()
    reference.fc = torch.nn.Identity()
    assert set(state) == set(reference.state_dict())
    assert all(isinstance(value, torch.Tensor) for value in state.values())


def test_run_was_offline_and_wrote_its_keyed_artefacts(trained_cars):
    workdir = trained_cars["workdir"]
    assert trained_cars["network_attempts"] == []
    assert (workdir / "split_cache_synthetic_seed42.pkl").is_file()
    assert not (workdir / "split_cache.pkl").exists()
    cache = workdir / "cache_dir" / f"synthetic_{INPUT_SIZE}_resnet152_random_seed42"
    assert (cache / "encoders" / "default").exists()
    assert (workdir / "lightning_logs").is_dir()


def test_frozen_encoder_runs_once_per_image_then_never(trained_cars, monkeypatch):
    # 196 classes x 1 image x 2 splits, split by class between train and validation.
    assert trained_cars["images_seen"] == 392
    monkeypatch.chdir(trained_cars["workdir"])
    TinyResNet.images_seen = 0
    second = trained_cars["workdir"] / "second_servable"
    second.mkdir()
    (second / "NOTES.txt").write_text("my own notes")  # kept: the save replaces only its files
    cars_train.main(train_argv(second))
    assert TinyResNet.images_seen == 0
    assert (second / "config.json").is_file()
    assert (second / "NOTES.txt").read_text() == "my own notes"


def test_a_save_dir_the_save_would_refuse_stops_the_run_before_training(
    workdir, no_network, capsys
):
    a_file = workdir / "servable.txt"
    a_file.write_text("not a folder")
    project = workdir / "project"
    project.mkdir()
    (project / "config.json").write_text('{"lr": 1}')
    for bad, reason in [(a_file, "is not a directory"), (project, "it is not a saved")]:
        TinyResNet.images_seen = 0
        with pytest.raises(SystemExit) as info:
            cars_train.main(train_argv(bad))
        assert str(info.value).startswith(f"error: --save-dir {bad}: ")
        assert reason in str(info.value)
        assert TinyResNet.images_seen == 0  # refused before the cache fill
    assert a_file.read_text() == "not a folder"
    assert sorted(p.name for p in project.iterdir()) == ["config.json"]


def test_views_flag_trains_on_cached_augmented_views(trained_cars, monkeypatch):
    monkeypatch.chdir(trained_cars["workdir"])
    TinyResNet.images_seen = 0
    argv = train_argv(trained_cars["workdir"] / "views_servable") + ["--views", "2"]
    with pytest.warns(UserWarning, match=r"views changed \(saved 1, now 2\)"):
        model = cars_train.main(argv)
    assert TinyResNet.images_seen == 2 * 196 + 196  # two views of each training image
    assert model.configure_caches().views == 2
    assert (trained_cars["workdir"] / "views_servable" / "config.json").is_file()
    assert cars_train.parse_args([]).views == 1


def test_parser_defaults_follow_synthetic():
    real = cars_train.parse_args([])
    assert (real.batch_size, real.epochs, real.input_size, real.weights) == (
        2048,
        1000,
        IMAGE_SIZE,
        "pretrained",
    )
    assert real.shuffle is False
    synthetic = cars_train.parse_args(["--synthetic"])
    assert (synthetic.batch_size, synthetic.epochs, synthetic.input_size, synthetic.weights) == (
        SYNTHETIC_BATCH_SIZE,
        SYNTHETIC_EPOCHS,
        SYNTHETIC_IMAGE_SIZE,
        "random",
    )
    explicit = cars_train.parse_args(["--synthetic", "--weights", "pretrained", "--shuffle"])
    assert explicit.weights == "pretrained" and explicit.shuffle is True


def test_missing_real_data_exits_with_hint(workdir, no_network, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cars_train.main(["--data-dir", str(workdir / "nothing_here"), "--input-size", "32"])
    message = str(exit_info.value.code)
    assert "--data-dir" in message and "--synthetic" in message
    assert no_network == []


@pytest.mark.slow
def test_module_entry_point_reports_missing_data(tmp_path):
    # Same as `python -m examples.cars.train`, with sockets disabled in the child.
    code = (
        "import runpy, socket, sys\n"
        "def refuse(*a, **k): raise OSError('network access attempted')\n"
        "socket.socket.connect = refuse\n"
        "sys.argv = ['train', '--data-dir', sys.argv[1]]\n"
        "runpy.run_module('examples.cars.train', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "missing")],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "--data-dir" in result.stderr and "--synthetic" in result.stderr
    assert "network access attempted" not in result.stderr


def test_head_dropout_follows_the_backbone_weights(trained_cars):
    pretrained = torchvision.models.ResNet152_Weights.DEFAULT
    build = functools.partial(Model, lr=1e-3, mining="hard", cache_dir=None)
    assert build(weights=pretrained).model.head.get_config_dict()["dropout"] == HEAD_DROPOUT > 0
    assert build(weights=None).model.head.get_config_dict()["dropout"] == 0.0
    assert build(weights=None, dropout=0.3).model.head.get_config_dict()["dropout"] == 0.3
    # the --synthetic run uses random weights, so its head has no dropout
    assert isinstance(trained_cars["model"].model.head.dropout, torch.nn.Identity)
