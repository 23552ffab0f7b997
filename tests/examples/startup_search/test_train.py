"""``python -m examples.startup_search.train`` offline, with the local MiniLM and the cache."""

import json
import os

import pytest

from examples.startup_search import train as startup_train
from examples.startup_search.make_sample_dataset import SAMPLE_PATH
from quaterion_models import SimilarityModel


def test_default_encoder_is_the_installed_model_dir(local_minilm):
    assert os.path.isfile(os.path.join(local_minilm, "modules.json"))
    parser = startup_train.build_parser()
    args = parser.parse_args([])
    assert args.dataset == SAMPLE_PATH and os.path.isfile(SAMPLE_PATH)
    assert (args.epochs, args.save_dir, args.encoder) == (30, "startups", None)


def test_dataset_labels_are_sorted_and_deterministic(tmp_path):
    path = tmp_path / "s.jsonl"
    rows = [{"description": f"d{i}", "industry": ind} for i, ind in enumerate("CABCAB")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = startup_train.StartupsDataset(str(path), max_samples=5)
    assert len(dataset) == 5 and dataset.get_num_industries() == 3
    assert dataset.industries == ["A", "B", "C"]
    for i in range(len(dataset)):
        sample = dataset[i]
        assert sample.group == "ABC".index(sample.obj["industry"])
    again = startup_train.StartupsDataset(str(path), max_samples=5)
    assert [s["description"] for s in again.data] == [s["description"] for s in dataset.data]


def test_synthetic_training_saves_a_servable(
    workdir, local_minilm, no_network, monkeypatch, encoded
):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    save_dir = workdir / "startups"
    startup_train.main(["--synthetic", "--encoder", local_minilm, "--epochs", "2",
                        "--max-samples", "128", "--save-dir", str(save_dir)])  # fmt: skip
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    # The frozen encoder is cached: each description is encoded once over two epochs.
    assert len(encoded) == 128 and len(set(encoded)) > 100
    encoded.clear()

    model = SimilarityModel.load(str(save_dir))
    vectors = model.encode(["some text"])
    assert vectors.shape == (1, 384)
    encoder_files = {p.name for p in (save_dir / "encoders" / "default").iterdir()}
    assert {"model.safetensors", "tokenizer.json", "encoder_config.json"} <= encoder_files
    assert no_network == []


def test_missing_dataset_exits_with_hint(workdir, no_network):
    with pytest.raises(SystemExit) as exit_info:
        startup_train.main(["--dataset", str(workdir / "absent.jsonl")])
    message = str(exit_info.value.code)
    assert "--dataset" in message and "--synthetic" in message
    assert no_network == []
