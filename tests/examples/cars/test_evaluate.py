"""Tests of ``python -m examples.cars.evaluate`` against a naive R-precision."""

import ast
import os
import re

import numpy as np
import pytest

from examples.cars import evaluate as cars_evaluate
from examples.cars.data import get_datasets
from quaterion_models import SimilarityModel

from .conftest import INPUT_SIZE


def naive_r_precision(embeddings: np.ndarray, groups: np.ndarray) -> float:
    """Micro-averaged R-precision with cosine distance, each query excluded from its own row."""
    normed = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    hits = relevant = 0
    for i in range(len(groups)):
        others = [j for j in range(len(groups)) if j != i]
        dist = [1.0 - (float(normed[i] @ normed[j]) + 1.0) / 2.0 for j in others]
        order = [others[k] for k in np.argsort(dist, kind="stable")]
        r = sum(1 for j in others if groups[j] == groups[i])
        hits += sum(1 for j in order[:r] if groups[j] == groups[i])
        relevant += r
    return hits / relevant


def test_evaluate_prints_both_metrics_and_plots(trained_cars, workdir, capsys):
    plot = workdir / "plot.png"
    argv = ["--synthetic", "--model", "both", "--tuned-model", str(trained_cars["save_dir"]),
            "--input-size", str(INPUT_SIZE), "--plot", str(plot)]  # fmt: skip
    results = cars_evaluate.main(argv)

    printed = re.findall(r"^(base|tuned) model: (\{.*\})$", capsys.readouterr().out, re.M)
    assert [name for name, _ in printed] == ["base", "tuned"]
    for name, text in printed:
        values = ast.literal_eval(text)
        assert list(values) == ["RetrievalRPrecision"]
        assert 0.0 <= values["RetrievalRPrecision"] <= 1.0
        assert values["RetrievalRPrecision"] == pytest.approx(
            float(results[name]["RetrievalRPrecision"])
        )
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The sample (1000) covers the 196 test images, so the value is the full R-precision.
    _, test = get_datasets(INPUT_SIZE, split_cache_path=None, synthetic=True)
    samples = [test[i] for i in range(len(test))]
    tuned = SimilarityModel.load(str(trained_cars["save_dir"]))
    embeddings = tuned.encode([s.obj for s in samples], to_numpy=True)
    groups = np.array([s.group for s in samples])
    assert float(results["tuned"]["RetrievalRPrecision"]) == pytest.approx(
        naive_r_precision(embeddings, groups), abs=1e-6
    )


def test_missing_tuned_model_exits_with_hint(workdir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cars_evaluate.main(["--synthetic", "--model", "tuned", "--input-size", "32",
                            "--tuned-model", str(workdir / "absent"), "--plot", ""])  # fmt: skip
    assert "--tuned-model" in str(exit_info.value.code)


def test_a_plot_path_that_is_a_directory_stops_before_evaluating(workdir, capsys):
    with pytest.raises(SystemExit) as info:
        cars_evaluate.main(["--synthetic", "--plot", str(workdir)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"--plot {workdir} is a directory" in err
    assert os.path.join(str(workdir), "cars_evaluation.png") in err


def test_a_damaged_tuned_model_exits_with_the_file(trained_cars, workdir):
    import shutil

    damaged = workdir / "damaged"
    shutil.copytree(trained_cars["save_dir"], damaged)
    weights = damaged / "head" / "weights.bin"
    weights.write_bytes(weights.read_bytes()[:100])  # a copy that stopped early
    with pytest.raises(SystemExit) as info:
        cars_evaluate.main(["--synthetic", "--model", "tuned", "--input-size", "32",
                            "--tuned-model", str(damaged), "--plot", ""])  # fmt: skip
    assert str(info.value).startswith("error: ") and str(weights) in str(info.value)
