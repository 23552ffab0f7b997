"""The quick-start demo: shipped data, a fast offline smoke run, and the full README run."""

import collections
import json
import os
import subprocess
import sys

import pytest

from examples.quick_start_data import generate

from .output_checks import banned_lines, doubled_final_bars, metric_lines

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SPLITS = ("train", "val", "test")
#: the quick start's servable records the library encoder, so it loads without the repo
TRANSFORMER_MODULE = "quaterion_models.encoders.extras.transformer_encoder"


def _read(path):
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def test_shipped_files_are_the_generator_output(tmp_path):
    generate.main(["--out-dir", str(tmp_path)])
    for split in SPLITS:
        shipped = os.path.join(generate.__file__.rsplit(os.sep, 1)[0], f"{split}.jsonl")
        with open(shipped, "rb") as a, open(tmp_path / f"{split}.jsonl", "rb") as b:
            assert a.read() == b.read(), f"{split}.jsonl differs from the generator's output"


def test_splits_hold_disjoint_topics_in_shared_styles():
    records = generate.generate_records()
    groups = {split: {r["group"] for r in rows} for split, rows in records.items()}
    topics = {split: {r["topic"] for r in rows} for split, rows in records.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not groups[a] & groups[b]
        assert not topics[a] & topics[b]
    assert {split: len(g) for split, g in groups.items()} == generate.SPLITS
    for split, rows in records.items():
        # one topic <-> one group id, and every group has every style twice
        assert len({(r["group"], r["topic"]) for r in rows}) == len(groups[split])
        per_group_style = collections.Counter((r["group"], r["style"]) for r in rows)
        assert set(per_group_style.values()) == {generate.TEXTS_PER_STYLE}
        assert {r["style"] for r in rows} == set(generate.STYLES)
        for r in rows:
            assert any(phrase in r["text"] for phrase in generate.TOPICS[r["topic"]])


def test_read_split_names_the_flags_when_data_is_missing(tmp_path):
    from examples.quick_start import read_split

    with pytest.raises(FileNotFoundError, match="--data-dir"):
        read_split(str(tmp_path / "train.jsonl"))


@pytest.mark.parametrize(
    "line, reason",
    [
        ("not json", "line 2 is not JSON"),
        ('["a list"]', r"line 2: expected a record with text \(str\), group \(int\)"),
        ('{"text": "t", "group": "7", "topic": "x", "style": "y"}', r"\['group'\] missing"),
        ('{"text": "t", "group": 7}', r"\['topic', 'style'\] missing"),
    ],
)
def test_read_split_names_the_line_that_is_not_a_record(tmp_path, line, reason):
    from examples.quick_start import DataFileError, read_split

    good = '{"text": "t", "group": 1, "topic": "x", "style": "y"}'
    path = tmp_path / "train.jsonl"
    path.write_text(f"{good}\n{line}\n\n")
    with pytest.raises(DataFileError, match=reason):
        read_split(str(path))
    path.write_text(f"{good}\n\n{good}\n")
    assert read_split(str(path)) == [json.loads(good)] * 2


def test_bad_data_dir_and_encoder_exit_with_the_reason(tmp_path, no_network, monkeypatch):
    from examples.quick_start import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("train", "val", "test"):
        (tmp_path / f"{name}.jsonl").write_text("{oops\n")
    with pytest.raises(SystemExit) as info:
        main(["--data-dir", str(tmp_path), "--save-dir", str(tmp_path / "out")])
    assert str(info.value).startswith(f"error: {tmp_path / 'train.jsonl'} line 1 is not JSON")
    with pytest.raises(SystemExit) as info:
        main(["--encoder", str(tmp_path), "--limit", "8", "--save-dir", str(tmp_path / "out")])
    assert str(info.value).startswith(f"error: --encoder {tmp_path}: TransformerEncoder: ")
    assert "config.json does not exist" in str(info.value)
    assert not (tmp_path / "out").exists()
    (tmp_path / "out-index").write_text("a file where the default index goes")
    with pytest.raises(SystemExit) as info:
        main(["--limit", "8", "--save-dir", str(tmp_path / "out")])
    assert str(info.value).startswith(f"error: --index-dir {tmp_path / 'out-index'} is not a")


def test_pick_queries_one_per_topic_in_distinct_styles():
    from examples.quick_start import pick_queries

    rows = _read(os.path.join(REPO_ROOT, "examples", "quick_start_data", "test.jsonl"))
    picked = pick_queries(rows, 3)
    assert len({rows[i]["topic"] for i in picked}) == 3
    assert len({rows[i]["style"] for i in picked}) == 3


def test_smoke_run_trains_saves_and_reloads(tmp_path, workdir, no_network, capsys, monkeypatch):
    from quaterion_models import SimilarityModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what main() sets; restored after the test
    from examples.quick_start import main

    save_dir = str(tmp_path / "servable")
    os.mkdir(save_dir)
    with open(os.path.join(save_dir, "NOTES.txt"), "w", encoding="utf-8") as file:
        file.write("my own notes")  # kept: the save replaces only its own files
    result = main(
        [
            "--epochs",
            "1",
            "--limit",
            "64",
            "--save-dir",
            save_dir,
            "--num-queries",
            "2",
            "--top-k",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert no_network == []
    for key in ("before", "after", "reloaded"):
        assert 0.0 <= result[key] <= 1.0
    # the reloaded servable scores exactly what the trained model scored
    assert result["reloaded"] == pytest.approx(result["after"], abs=1e-6)
    assert result["epochs"] == 1
    assert out.count("Query: ") == 2
    assert out.count("  raw encoder:\n") == 2  # raw and tuned neighbours of each query
    assert out.count("  tuned encoder:\n") == 2
    assert out.count("    1. [") == 4 and out.count("    2. [") == 4 and "    3. [" not in out
    assert "RetrievalRPrecision of the raw encoder" in out
    # the tuned neighbours were read back from the embedded index, which reopens in this process
    assert result["index_dir"] == save_dir + "-index"
    assert "from the embedded Qdrant index" in out
    from quaterion_models.index import SimilarityIndex

    from examples.quick_start import index_neighbours, nearest_neighbours, pick_queries

    served = SimilarityModel.load(save_dir)
    test_rows = _read(os.path.join(REPO_ROOT, "examples", "quick_start_data", "test.jsonl"))[:64]
    corpus = [r["text"] for r in test_rows]
    rows = pick_queries(test_rows, 2)
    queries = [corpus[row] for row in rows]
    with SimilarityIndex.open(served, path=result["index_dir"]) as index:
        assert index.count() == 64 and index.distance == "cosine"
        from_index = index_neighbours(index, queries, rows, k=2)
    assert from_index == nearest_neighbours(served, queries, corpus, k=2, exclude=rows)

    with open(os.path.join(save_dir, "NOTES.txt"), encoding="utf-8") as file:
        assert file.read() == "my own notes"
    with open(os.path.join(save_dir, "config.json"), encoding="utf-8") as file:
        config = json.load(file)
    assert config["encoders"][0]["module"] == TRANSFORMER_MODULE
    assert config["head"]["class"] == "SkipConnectionHead"
    served = SimilarityModel.load(save_dir)
    vectors = served.encode(["a tweet about bread", "a legal notice about bees"])
    assert vectors.shape == (2, 384)


def test_invalid_epochs_is_rejected(capsys):
    from examples.quick_start import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--epochs", "0"])
    assert "argument --epochs: must be a positive integer, got 0" in capsys.readouterr().err


def test_readme_command_improves_held_out_retrieval(tmp_path):
    """The README's command, as a subprocess, with its defaults: a clear held-out gain.

    Part of the default run (about 30 s on two shared cores): it is the end-to-end proof
    that training helps, so CI must run it."""
    save_dir = tmp_path / "servable"
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "examples.quick_start", "--save-dir", str(save_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    output = completed.stdout + completed.stderr
    assert banned_lines(output) == []
    assert doubled_final_bars(output) == []
    # our own progress comes first, before the slow imports, and for the raw-encoder pass
    assert completed.stdout.startswith("Loading torch, Lightning and sentence-transformers ...")
    assert "Evaluating the raw encoder on 256 held-out texts ..." in completed.stdout
    assert metric_lines(output, "Epoch", "rrp_validation:", "rrp_train:"), output
    summary = [line for line in completed.stdout.splitlines() if line.startswith("Summary:")]
    assert len(summary) == 1
    numbers = summary[0].split("RetrievalRPrecision ")[1].split(";")[0].split(" -> ")
    before, after = float(numbers[0]), float(numbers[1])
    assert after - before > 0.2, summary[0]
    with open(save_dir / "config.json", encoding="utf-8") as file:
        # a library class: the servable loads without the examples package
        assert json.load(file)["encoders"][0]["module"] == TRANSFORMER_MODULE


def test_importing_the_demo_does_not_need_the_training_stack():
    """SimilarityModel.load imports examples.quick_start to restore the encoder of an old
    servable: serving must not pull in quaterion or Lightning."""
    code = (
        "import sys, examples.quick_start, examples.quick_start_encoder\n"
        "assert examples.quick_start.MiniLMEncoder is examples.quick_start_encoder.MiniLMEncoder\n"
        "loaded = [m for m in ('quaterion', 'pytorch_lightning') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=120)


def test_old_servable_naming_quick_start_minilm_encoder_loads(tmp_path):
    """Servables saved before the demo used TransformerEncoder record
    ``examples.quick_start.MiniLMEncoder`` over a sentence-transformers directory."""
    import shutil

    import torch
    from quaterion_models import SimilarityModel
    from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder
    from quaterion_models.heads import SkipConnectionHead

    from examples.quick_start import default_encoder_path

    torch.manual_seed(0)
    encoder = TransformerEncoder(default_encoder_path())
    head = SkipConnectionHead(encoder.embedding_size)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.normal_(std=0.5)
    model = SimilarityModel(encoders=encoder, head=head).eval()
    old = tmp_path / "old"
    model.save(str(old))
    # rewrite it as the old demo saved it: its encoder class, the sentence-transformers files
    config_path = old / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    (record,) = config["encoders"]
    encoder_dir = old / "encoders" / record["key"]
    shutil.rmtree(encoder_dir)
    shutil.copytree(default_encoder_path(), encoder_dir)
    record.update(module="examples.quick_start", **{"class": "MiniLMEncoder"})
    config_path.write_text(json.dumps(config), encoding="utf-8")

    loaded = SimilarityModel.load(str(old))
    assert type(loaded.encoders[record["key"]]) is TransformerEncoder
    texts = ["a tweet about bread", "a legal notice about bees", "court ruling on honey"]
    torch.testing.assert_close(
        loaded.encode(texts, to_numpy=False), model.encode(texts, to_numpy=False)
    )
