"""Each example's servable loads and encodes in a fresh process that has only the installed
package: working directory outside the repository, the repository root not importable (so
``examples`` does not resolve), no network. The quick-start servable also exports to ONNX
with torch parity."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, socket, sys
    import numpy as np

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    socket.socket.connect = refuse
    socket.getaddrinfo = refuse
    assert importlib.util.find_spec("examples") is None, "the repository is importable"
    import torch
    from quaterion_models import SimilarityModel

    for job in json.loads(sys.argv[1]):
        model = SimilarityModel.load(job["servable"])
        records = job.get("records")
        if records is None:  # images
            records = list(torch.from_numpy(np.load(job["images"])))
        np.save(job["output"], model.encode(records))
    print("MODULE", SimilarityModel.__module__, sys.modules["quaterion_models"].__file__)
    """
)


def installed_package_only(tmp_path) -> dict:
    """Environment whose import path holds ``quaterion_models`` (this checkout's, as the
    editable install provides it) but not the repository root."""
    site = tmp_path / "site"
    site.mkdir()
    os.symlink(os.path.join(REPO_ROOT, "quaterion_models"), site / "quaterion_models")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HUB_OFFLINE")}
    env["PYTHONPATH"] = str(site)
    return env


@pytest.fixture(scope="module")
def servables(tmp_path_factory):
    """The servables the three examples save (their own TrainableModels, untrained heads)."""
    from examples.cars.models import Model as CarsModel
    from examples.quick_start import build_model_class, default_encoder_path
    from examples.startup_search.model import Model as StartupModel

    root = tmp_path_factory.mktemp("servables")
    torch.manual_seed(0)
    models = {
        "quick_start": build_model_class()(default_encoder_path()),
        "startup_search": StartupModel(pretrained_name=default_encoder_path(), num_groups=3),
        "cars": CarsModel(lr=1e-3, mining="hard", arch="resnet18", weights=None, cache_dir=None),
    }
    paths = {}
    for name, model in models.items():
        with torch.no_grad():
            for parameter in model.model.head.parameters():
                parameter.normal_(std=0.5)  # a head that changes the vectors
        paths[name] = str(root / name)
        model.save_servable(paths[name])
    return {name: (model.model, paths[name]) for name, model in models.items()}


def test_each_example_servable_loads_outside_the_repository(servables, tmp_path):
    texts = ["fast payments for small shops", "a tweet about bread", "telemedicine"]
    images = torch.rand(3, 3, 32, 32)
    np.save(tmp_path / "images.npy", images.numpy())
    inputs = {
        "quick_start": texts,
        "startup_search": [{"description": texts[0], "industry": "x"}] + texts[1:],
        "cars": None,
    }
    jobs = [
        {
            "servable": servables[name][1],
            "records": records,
            "images": str(tmp_path / "images.npy"),
            "output": str(tmp_path / f"{name}.npy"),
        }
        for name, records in inputs.items()
    ]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(jobs)],
        cwd=outside,
        env=installed_package_only(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "site") in result.stdout  # the package came from the import path
    for name, records in inputs.items():
        model = servables[name][0]
        expected = model.encode(list(images) if records is None else records)
        got = np.load(tmp_path / f"{name}.npy")
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
        with open(os.path.join(servables[name][1], "config.json"), encoding="utf-8") as file:
            modules = [entry["module"] for entry in json.load(file)["encoders"]]
        assert all(module.startswith("quaterion_models.") for module in modules), modules


def test_quick_start_servable_onnx_parity(servables, tmp_path):
    """The issue's bar on the quick-start servable: cosine >= 0.99999, max abs <= 1e-5."""
    from quaterion_models import SimilarityModel
    from quaterion_models.onnx import OnnxSimilarityModel

    served = SimilarityModel.load(servables["quick_start"][1])
    served.export_onnx(str(tmp_path / "onnx"))
    texts = [
        "a tweet about bread",
        "Legal notice: the bees of the county are protected under section 4.",
        "word " * 400,  # truncated at 256 tokens by both
        "ok",
    ]
    expected = served.encode(texts)
    got = OnnxSimilarityModel.load(tmp_path / "onnx").encode(texts, batch_size=3)
    cosine = (
        (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    )
    assert cosine.min() >= 0.99999 and np.abs(got - expected).max() <= 1e-5
