"""The documentation plot scripts: each writes its PNG and shows the effect its page claims."""

import os

import pytest
import torch

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPTS_DIR = os.path.join(REPO_ROOT, "docs", "scripts")


def assert_png(path):
    with open(path, "rb") as file:
        assert file.read(8) == PNG_SIGNATURE, f"{path} is not a PNG"
    assert os.path.getsize(path) > 5_000


def test_skip_connection_head_starts_near_identity(doc_script, tmp_path):
    script = doc_script("plot_skip_connection")
    results = script.main(["--out-dir", str(tmp_path)])
    assert_png(tmp_path / script.FILE_NAME)
    skip = results["SkipConnectionHead"]
    assert float(skip["cosine_to_input"].min()) > 0.999
    assert skip["distance_correlation"] > 0.999
    assert skip["r_precision"] == pytest.approx(results["input"]["r_precision"], abs=0.01)
    for name in ("StackedProjectionHead([d])", "WideningHead"):
        assert abs(float(results[name]["cosine_to_input"].mean())) < 0.3
        assert results[name]["r_precision"] < results["input"]["r_precision"] - 0.1


def test_skip_connection_r_precision_matches_library_metric(doc_script):
    from quaterion.eval.group import RetrievalRPrecision

    script = doc_script("plot_skip_connection")
    x, groups = script.clustered_inputs(n_groups=4, per_group=5, dim=8, seed=3)
    expected = float(RetrievalRPrecision().compute(x, groups))
    assert script.r_precision(x, groups) == pytest.approx(expected, abs=1e-6)


def test_plain_batch_hard_matches_a_loop(doc_script):
    script = doc_script("plot_triplet_collapse")
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 0])
    losses = []
    for a in range(7):
        d = [float(torch.dist(embeddings[a], embeddings[j])) for j in range(7)]
        positives = [d[j] for j in range(7) if j != a and groups[j] == groups[a]]
        negatives = [d[j] for j in range(7) if groups[j] != groups[a]]
        losses.append(max(max(positives, default=0.0) - min(negatives) + 0.5, 0.0))
    actual = script.plain_batch_hard(embeddings, groups, margin=0.5)
    assert float(actual) == pytest.approx(sum(losses) / len(losses), rel=1e-6)


def test_plain_batch_hard_collapses_and_quaterion_losses_do_not(doc_script, tmp_path):
    script = doc_script("plot_triplet_collapse")
    results = script.main(["--out-dir", str(tmp_path), "--steps", "150"])
    assert_png(tmp_path / script.FILE_NAME)
    plain = results["plain batch-hard"]
    tail = plain["loss"][-20:]
    assert sum(tail) / len(tail) == pytest.approx(script.MARGIN, abs=0.1)
    assert plain["spread"][-1] < plain["spread"][0] / 10
    for name in ('TripletLoss(mining="hard")', 'TripletLoss(mining="semi_hard")'):
        assert results[name]["spread"][-1] > results[name]["spread"][0]
        assert results[name]["final_spread"] > 20 * plain["final_spread"]
        assert results[name]["r_precision"] > results["input"]["r_precision"] + 0.2


def test_confidence_is_the_mean_of_group_peaks(doc_script):
    script = doc_script("plot_softmax_confidence")
    embeddings = torch.tensor([[0.7, 0.2, 0.1, 0.5, 0.25, 0.25], [1 / 3] * 6])
    expected = [(0.7 + 0.5) / 2, 1 / 3]
    actual = script.confidence(embeddings, output_groups=2, output_size_per_group=3)
    torch.testing.assert_close(actual, torch.tensor(expected))


def test_softmax_head_is_more_confident_in_distribution(doc_script, tmp_path):
    script = doc_script("plot_softmax_confidence")
    results = script.main(["--out-dir", str(tmp_path), "--steps", "60"])
    assert_png(tmp_path / script.FILE_NAME)
    scores = {name: float(values.mean()) for name, values in results["confidence"].items()}
    known = scores.pop("training clusters (new points)")
    for name, value in scores.items():
        assert known > value + 0.1, (name, value, known)
    for values in results["confidence"].values():
        assert float(values.min()) >= 1 / script.PER_GROUP - 1e-6
        assert float(values.max()) <= 1 + 1e-6


def test_cache_plot_and_counter_without_the_encoder(doc_script, tmp_path):
    script = doc_script("measure_cache")

    class Echo(torch.nn.Module):
        def forward(self, batch):
            return torch.zeros(len(batch), 2)

    echo = script.counting(Echo())
    echo(["a", "b"])
    echo(["c"])
    assert echo.texts_seen == 3
    fake = {
        "no cache": {"setup_time": 0.1, "epoch_times": [5.0, 4.0]},
        "cache": {"setup_time": 3.0, "epoch_times": [0.5, 0.4]},
    }
    assert_png(script.plot(fake, str(tmp_path)))


@pytest.mark.slow
def test_cache_measurement_encodes_each_text_once_with_the_cache(doc_script, tmp_path):
    script = doc_script("measure_cache")
    results = script.main(["--out-dir", str(tmp_path), "--epochs", "2", "--limit", "8"])
    assert_png(tmp_path / script.FILE_NAME)
    uncached, cached = results["no cache"], results["CacheConfig(CacheType.AUTO)"]
    assert uncached["dataset_texts"] == cached["dataset_texts"] == 16
    assert uncached["texts_encoded"] == 2 * 16
    assert cached["texts_encoded"] == 16
    assert len(uncached["epoch_times"]) == len(cached["epoch_times"]) == 2


def test_compare_heads_trains_every_head_on_given_vectors(doc_script, tmp_path):
    """Fast variant: random clustered vectors instead of MiniLM; one curve point per epoch."""
    script = doc_script("compare_heads")
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 16, generator=generator)

    def split(groups):
        groups = torch.tensor(groups)
        return centres[groups] + 0.3 * torch.randn(len(groups), 16, generator=generator), groups

    splits = {"train": split([0, 1, 2, 3] * 8), "test": split([4, 5] * 6)}
    curves = script.train_heads(splits, epochs=2, seed=0)
    assert set(curves) == set(script.build_heads(16))
    for curve in curves.values():
        assert len(curve) == 3
        assert all(0.0 <= value <= 1.0 for value in curve)
    # an untrained skip-connection head scores what the raw vectors score
    from quaterion.eval.group import RetrievalRPrecision

    raw = float(RetrievalRPrecision().compute(*splits["test"]))
    assert curves["SkipConnectionHead"][0] == pytest.approx(raw, abs=0.02)
    assert_png(script.plot(curves, str(tmp_path)))


@pytest.mark.slow
def test_compare_heads_on_minilm_vectors(doc_script, tmp_path):
    script = doc_script("compare_heads")
    curves = script.main(["--out-dir", str(tmp_path), "--epochs", "3"])
    assert_png(tmp_path / script.FILE_NAME)
    skip = curves["SkipConnectionHead"]
    assert skip[-1] > skip[0] + 0.05  # training on other topics improves the held-out ones


def test_every_static_figure_has_a_generating_script():
    """Figures are produced by docs/scripts, never pasted in: each PNG in _static is the
    FILE_NAME of exactly one script."""
    import ast

    produced = []
    for name in sorted(os.listdir(SCRIPTS_DIR)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(SCRIPTS_DIR, name), encoding="utf-8") as file:
            tree = ast.parse(file.read())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "FILE_NAME" for t in node.targets
            ):
                produced.append(node.value.value)
    static = os.path.join(REPO_ROOT, "docs", "source", "_static")
    pngs = sorted(f for f in os.listdir(static) if f.endswith(".png"))
    assert len(produced) == len(set(produced))
    assert pngs == sorted(produced)


def test_loss_benchmark_table_and_plot(doc_script, tmp_path):
    from benchmarks import losses

    table = tmp_path / "loss_benchmark.csv"
    rows = losses.main(["--batches", "64", "--repeats", "1", "--csv", str(table)])
    assert [row["loss"] for row in rows][-1] == "MNRL (vs plain torch)" and len(rows) == 12
    for row in rows:  # 64**3 triplets is under the cap: PML runs everywhere
        assert row["ours_s"] > 0 and row["pml_s"] > 0
        assert row["time_ratio"] == pytest.approx(row["ours_s"] / row["pml_s"])
        assert row["ours_syncs"] == 0  # no loss makes a GPU host wait
    script = doc_script("plot_loss_benchmark")
    read = script.main(["--csv", str(table), "--out-dir", str(tmp_path)])
    assert [r["loss"] for r in read] == [r["loss"] for r in rows]
    assert_png(tmp_path / script.FILE_NAME)
