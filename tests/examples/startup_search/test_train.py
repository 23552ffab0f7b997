"""``python -m examples.startup_search.train`` offline, with the local MiniLM and the cache."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from examples.startup_search import train as startup_train
from examples.startup_search.encoder import StartupEncoder
from examples.startup_search.make_sample_dataset import SAMPLE_PATH, write_jsonl
from examples.startup_search.model import StartupsDataset, read_records, split_records
from examples.startup_search.synthetic import generate_startups
from quaterion_models import SimilarityModel

from ..output_checks import banned_lines, doubled_final_bars, metric_lines

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def test_default_encoder_is_the_installed_model_dir(local_minilm):
    assert os.path.isfile(os.path.join(local_minilm, "modules.json"))
    parser = startup_train.build_parser()
    args = parser.parse_args([])
    assert args.dataset == SAMPLE_PATH and os.path.isfile(SAMPLE_PATH)
    assert (args.epochs, args.save_dir, args.encoder) == (30, "startups", None)
    assert (args.lr, args.head) == (0.1, "skip")


def test_dataset_labels_are_sorted_and_deterministic(tmp_path):
    path = tmp_path / "s.jsonl"
    rows = [{"description": f"d{i}", "industry": ind} for i, ind in enumerate("CABCAB")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = StartupsDataset(str(path), max_samples=5)
    assert len(dataset) == 5 and dataset.get_num_industries() == 3
    assert dataset.industries == ["A", "B", "C"]
    for i in range(len(dataset)):
        sample = dataset[i]
        assert sample.group == "ABC".index(sample.obj["industry"])
    again = StartupsDataset(str(path), max_samples=5)
    assert [s["description"] for s in again.data] == [s["description"] for s in dataset.data]


def test_synthetic_training_saves_a_servable(
    workdir, local_minilm, no_network, monkeypatch, encoded
):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    save_dir = workdir / "startups"
    save_dir.mkdir()
    (save_dir / "NOTES.txt").write_text("my own notes")  # kept: the save replaces only its files
    result = startup_train.main(["--synthetic", "--encoder", local_minilm, "--epochs", "2",
                                 "--max-samples", "128", "--save-dir", str(save_dir)])  # fmt: skip
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    # The frozen encoder is cached: each train and validation description is encoded once
    # over two epochs; the held-out ones once for the raw and once for the trained model.
    assert sum(result["sizes"].values()) == 128
    assert len(encoded) == 128 + result["sizes"]["test"] and len(set(encoded)) > 100
    encoded.clear()

    assert (save_dir / "NOTES.txt").read_text() == "my own notes"
    model = SimilarityModel.load(str(save_dir))
    vectors = model.encode(["some text"])
    assert vectors.shape == (1, 384)
    encoder_files = {p.name for p in (save_dir / "encoders" / "default").iterdir()}
    assert {"model.safetensors", "tokenizer.json", "encoder_config.json"} <= encoder_files
    assert no_network == []


def test_a_save_dir_that_is_a_file_stops_the_run_before_training(workdir, no_network, encoded):
    a_file = workdir / "startups"
    a_file.write_text("not a folder")
    with pytest.raises(SystemExit) as info:
        startup_train.main(["--synthetic", "--epochs", "1", "--save-dir", str(a_file)])
    assert str(info.value).startswith(f"error: --save-dir {a_file}: ")
    assert "is not a directory" in str(info.value) and encoded == []
    assert a_file.read_text() == "not a folder"


@pytest.mark.parametrize(
    "line, reason",
    [
        ("not json", "line 2 is not JSON"),
        ('{"description": "x"}', r"line 2: expected an object with str fields \['description', 'industry'\]"),
        ('["x", "y"]', "line 2: expected an object"),
    ],
)  # fmt: skip
def test_a_dataset_line_that_is_not_a_record_is_named(workdir, no_network, encoded, line, reason):
    dataset = workdir / "startups.jsonl"
    good = json.dumps({"name": "A", "description": "a tool", "industry": "Tools"})
    dataset.write_text(f"{good}\n{line}\n")
    with pytest.raises(SystemExit) as info:
        startup_train.main(["--dataset", str(dataset), "--save-dir", str(workdir / "out")])
    assert re.match(rf"error: {re.escape(str(dataset))} {reason}", str(info.value))
    assert encoded == [] and no_network == []


def test_an_encoder_that_is_not_a_model_is_named(workdir, no_network):
    (workdir / "notes.txt").write_text("not a model")
    with pytest.raises(SystemExit) as info:
        startup_train.main(["--synthetic", "--encoder", str(workdir), "--max-samples", "40",
                            "--save-dir", str(workdir / "out")])  # fmt: skip
    assert str(info.value).startswith(f"error: --encoder {workdir}: TransformerEncoder: ")
    assert "config.json does not exist" in str(info.value) and no_network == []


def test_missing_dataset_exits_with_hint(workdir, no_network):
    with pytest.raises(SystemExit) as exit_info:
        startup_train.main(["--dataset", str(workdir / "absent.jsonl")])
    message = str(exit_info.value.code)
    assert "--dataset" in message and "--synthetic" in message
    assert no_network == []


def test_moved_classes_still_import_from_train():
    from examples.startup_search import model as startup_model

    assert startup_train.Model is startup_model.Model
    assert startup_train.StartupsDataset is startup_model.StartupsDataset
    assert not hasattr(startup_train, "Nope")


def test_split_is_stratified_three_one_one():
    records = [{"industry": ind, "description": f"{ind}{i}"} for i in range(10) for ind in "AB"]
    splits = split_records(records)
    assert {name: len(rows) for name, rows in splits.items()} == {"train": 12, "val": 4, "test": 4}
    for rows in splits.values():
        assert sorted({r["industry"] for r in rows}) == ["A", "B"]
    descriptions = [r["description"] for rows in splits.values() for r in rows]
    assert sorted(descriptions) == sorted(r["description"] for r in records)


def naive_r_precision(vectors: np.ndarray, labels: list) -> float:
    """Micro-averaged cosine R-precision, one query per row, computed with plain loops."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    hits = positions = 0
    for i, label in enumerate(labels):
        others = [j for j in range(len(labels)) if j != i]
        relevant = sum(labels[j] == label for j in others)
        ranked = sorted(others, key=lambda j: -float(unit[i] @ unit[j]))[:relevant]
        hits += sum(labels[j] == label for j in ranked)
        positions += relevant
    return hits / positions


def test_training_improves_held_out_retrieval(workdir, local_minilm):
    """Fast variant of the default run, as a subprocess: the trained servable ranks the
    held-out records clearly better than the raw encoder (measured again here with a naive
    loop), and the output is our own progress without the stack's banners."""
    save_dir = workdir / "startups"
    dataset = str(workdir / "startups.jsonl")
    write_jsonl(generate_startups(200, seed=3), dataset)
    completed = subprocess.run(
        [sys.executable, "-m", "examples.startup_search.train", "--dataset", dataset,
         "--encoder", local_minilm, "--save-dir", str(save_dir)],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )  # fmt: skip
    out = completed.stdout
    assert banned_lines(out + completed.stderr) == []
    assert doubled_final_bars(out + completed.stderr) == []
    assert metric_lines(out + completed.stderr, "Epoch", "rrp_validation:", "rrp_train:")
    assert f"Saved the servable to {save_dir}" in out
    numbers = re.search(r"raw encoder (\d\.\d+) -> trained (\d\.\d+)", out)
    printed_before, printed_after = float(numbers[1]), float(numbers[2])

    held_out = split_records(read_records(dataset, max_samples=640, seed=42))["test"]
    assert f"Held-out R-precision ({len(held_out)} records)" in out
    texts = [r["description"] for r in held_out]
    labels = [r["industry"] for r in held_out]
    after = naive_r_precision(SimilarityModel.load(str(save_dir)).encode(texts), labels)
    raw = StartupEncoder(local_minilm)
    with torch.no_grad():
        before = naive_r_precision(raw(texts).numpy(), labels)
    torch.testing.assert_close(after, printed_after, atol=1e-4, rtol=0)
    torch.testing.assert_close(before, printed_before, atol=1e-4, rtol=0)
    assert after > before + 0.03, (before, after)
