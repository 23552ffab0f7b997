"""TransformerEncoder against an independent computation (transformers' own tokenizer and
model, pooled with a loop), its servable files, and loading that runs no code from files."""

import json
import os
import pickle
import socket

import numpy as np
import pytest
import torch

from quaterion_models import SimilarityModel
from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder
from quaterion_models.heads import EmptyHead
from quaterion_models.utils import DamagedFileError
from tests.quaterion_models.tiny_models import TEXTS, minilm_dir, write_tiny_bert


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return write_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")))


def reference(path, texts, pooling, normalize, max_length):
    """transformers' AutoTokenizer + BertModel, pooled row by row."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    model = AutoModel.from_pretrained(path).eval()
    rows = []
    for text in texts:
        tokens = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**tokens).last_hidden_state[0]
        row = hidden[0] if pooling == "cls" else hidden.mean(dim=0)
        rows.append(torch.nn.functional.normalize(row, dim=0) if normalize else row)
    return torch.stack(rows)


@pytest.mark.parametrize("pooling,normalize", [("mean", False), ("cls", True)])
def test_matches_transformers_with_pooling_by_loop(bert_dir, pooling, normalize):
    encoder = TransformerEncoder(bert_dir, pooling=pooling, normalize=normalize, max_length=12)
    assert encoder.embedding_size == 32 and encoder.trainable is False
    with torch.no_grad():
        got = encoder(encoder.get_collate_fn()(TEXTS))  # padded batch of mixed lengths
    expected = reference(bert_dir, TEXTS, pooling, normalize, max_length=12)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_truncates_to_max_length(bert_dir):
    encoder = TransformerEncoder(bert_dir, max_length=8)
    batch = encoder.get_collate_fn()(["word " * 50, "short"])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].tolist()[1] == [1, 1, 1, 0, 0, 0, 0, 0]  # [CLS] short [SEP]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_slice_of_a_longer_batch_is_trimmed_and_encodes_like_the_texts_alone(bert_dir, pooling):
    from quaterion_models.encoders.extras.transformer_encoder import trim_padding

    encoder = TransformerEncoder(bert_dir, pooling=pooling)
    collate = encoder.get_collate_fn()
    batch = collate(["word " * 20, "short", "a little longer text"])
    part = {name: value[1:] for name, value in batch.items()}  # padded to the long text
    alone = collate(["short", "a little longer text"])  # padded to its own longest
    trimmed = trim_padding(part)
    assert {name: tuple(t.shape) for name, t in trimmed.items()} == {
        name: tuple(t.shape) for name, t in alone.items()
    }
    assert all(torch.equal(trimmed[name], alone[name]) for name in alone)  # same integer ids
    assert trim_padding(batch) is batch  # nothing to drop
    with torch.no_grad():
        got = encoder(part)
        untrimmed = encoder.embedder(**part)  # every padded column kept
    expected = reference(bert_dir, ["short", "a little longer text"], pooling, False, 512)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, untrimmed, atol=1e-6, rtol=1e-5)


def test_reads_sentence_transformers_settings(tmp_path):
    path = write_tiny_bert(str(tmp_path / "st"), pooling="cls", normalize=True)
    encoder = TransformerEncoder(path)
    settings = {k: encoder.settings[k] for k in ("pooling", "normalize", "max_length")}
    assert settings == {"pooling": "cls", "normalize": True, "max_length": 16}
    with torch.no_grad():
        vectors = encoder(encoder.get_collate_fn()(TEXTS))
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(len(TEXTS)))


@pytest.mark.parametrize("mode", ["mean", "cls"])
def test_reads_the_pooling_mode_string_of_newer_sentence_transformers(tmp_path, mode):
    path = write_tiny_bert(str(tmp_path / "st"), pooling="mean")
    config = os.path.join(path, "1_Pooling", "config.json")
    with open(config, "w") as file:  # the layout sentence-transformers 5 and later save
        json.dump({"embedding_dimension": 32, "pooling_mode": mode, "include_prompt": True}, file)
    assert TransformerEncoder(path).settings["pooling"] == mode
    with open(config, "w") as file:
        json.dump({"embedding_dimension": 32, "pooling_mode": "max"}, file)
    with pytest.raises(ValueError, match=r"pools with \['max'\]"):
        TransformerEncoder(path)


def test_matches_sentence_transformers_on_minilm():
    """The quick start's encoder gives sentence-transformers' own vectors."""
    from sentence_transformers import SentenceTransformer

    texts = TEXTS + ["word " * 300]  # longer than MiniLM's 256-token limit
    encoder = TransformerEncoder(minilm_dir())
    model = SimilarityModel(encoder, EmptyHead(encoder.embedding_size))
    expected = SentenceTransformer(minilm_dir(), device="cpu").encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(model.encode(texts, to_numpy=False), expected, atol=1e-5, rtol=0)


def test_servable_round_trip_offline_with_own_files(bert_dir, tmp_path, monkeypatch):
    encoder = TransformerEncoder(bert_dir, max_length=20, text_field="text")
    model = SimilarityModel(encoder, EmptyHead(32))
    records = [{"text": t} for t in TEXTS]
    before = model.encode(records, to_numpy=False)
    model.save(str(tmp_path / "servable"))
    files = sorted(os.listdir(tmp_path / "servable" / "encoders" / "default"))
    assert files == ["config.json", "encoder_config.json", "model.safetensors", "tokenizer.json"]

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    loaded = SimilarityModel.load(str(tmp_path / "servable"))
    torch.testing.assert_close(loaded.encode(records, to_numpy=False), before)
    # plain strings are accepted as well as dicts
    torch.testing.assert_close(loaded.encode(TEXTS, to_numpy=False), before)


def test_collate_is_picklable_and_rejects_non_text(bert_dir):
    encoder = TransformerEncoder(bert_dir)
    collate = pickle.loads(pickle.dumps(encoder.get_collate_fn()))
    ids = collate(["a b"])["input_ids"].tolist()
    assert (
        ids == encoder.get_collate_fn()(["a b"])["input_ids"].tolist() == [[101, 1037, 1038, 102]]
    )
    with pytest.raises(TypeError, match="records must be str"):
        collate([1, 2])
    with pytest.raises(TypeError, match="records must be str"):
        collate([{"text": "a"}])  # dicts need text_field
    model = SimilarityModel(encoder, EmptyHead(32))
    with pytest.raises(
        TypeError, match=r"ndarray\) is one record.*model.encode\(array.tolist\(\)\)"
    ):
        model.encode(np.array(["a b", "c d"]))
    torch.testing.assert_close(
        model.encode(np.array(["a b", "c d"]).tolist(), to_numpy=False),
        model.encode(["a b", "c d"], to_numpy=False),
    )


def test_trainable_flag_controls_gradients(bert_dir):
    frozen = SimilarityModel(TransformerEncoder(bert_dir), EmptyHead(32))
    tuned = SimilarityModel(TransformerEncoder(bert_dir, trainable=True), EmptyHead(32))
    assert not any(p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in tuned.parameters())


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"pooling": "max"}, ValueError, "pooling"),
        ({"max_length": 0}, ValueError, "max_length"),
        ({"max_length": 65}, ValueError, "64 positions"),
        ({"normalize": "yes"}, TypeError, "normalize"),
        ({"text_field": 3}, TypeError, "text_field"),
    ],
)
def test_bad_arguments_are_named(bert_dir, kwargs, error, match):
    with pytest.raises(error, match=match):
        TransformerEncoder(bert_dir, **kwargs)


def _saved(bert_dir, tmp_path):
    path = tmp_path / "encoder"
    TransformerEncoder(bert_dir).save(str(path))
    return path


@pytest.mark.parametrize(
    "field,value", [("pooling", "max"), ("max_length", "256"), ("normalize", 1), ("pad_id", None)]
)
def test_damaged_config_names_file_and_field(bert_dir, tmp_path, field, value):
    path = _saved(bert_dir, tmp_path)
    config = json.loads((path / "encoder_config.json").read_text())
    config[field] = value
    (path / "encoder_config.json").write_text(json.dumps(config))
    with pytest.raises(DamagedFileError, match=f"encoder_config.json.*'{field}'"):
        TransformerEncoder.load(str(path))


def test_missing_weights_and_pickled_weights_are_refused(bert_dir, tmp_path):
    path = _saved(bert_dir, tmp_path)
    state = TransformerEncoder.load(str(path)).embedder.model.state_dict()
    os.remove(path / "model.safetensors")
    torch.save(state, path / "pytorch_model.bin")  # a pickle: never read
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        TransformerEncoder.load(str(path))


def test_remote_code_in_config_is_never_run(bert_dir, tmp_path):
    path = _saved(bert_dir, tmp_path)
    marker = tmp_path / "ran"
    (path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    (path / "config.json").write_text(json.dumps(config))
    try:
        TransformerEncoder.load(str(path))
    except Exception:  # noqa: BLE001 - refusing is fine; running the code is not
        pass
    assert not marker.exists()


def test_unknown_name_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache
    with pytest.raises(OSError, match="neither a local directory"):
        TransformerEncoder("nobody/no-such-model", local_files_only=True)


def test_default_length_is_the_tokenizer_limit_within_the_positions(tmp_path):
    path = write_tiny_bert(str(tmp_path / "bert"))
    (tmp_path / "bert" / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 40}))
    assert TransformerEncoder(path).settings["max_length"] == 40
    (tmp_path / "bert" / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    assert TransformerEncoder(path).settings["max_length"] == 64  # max_position_embeddings


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json", "config.json"])
def test_truncated_model_files_are_damaged_files(bert_dir, tmp_path, name):
    path = _saved(bert_dir, tmp_path)
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedFileError, match="damaged TransformerEncoder files"):
        TransformerEncoder.load(str(path))


def test_a_directory_that_is_not_a_model_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(FileNotFoundError, match="is not a Hugging Face model directory") as info:
        TransformerEncoder(str(tmp_path))
    assert str(tmp_path / "config.json") in str(info.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_servable_saved_in_another_dtype_loads_in_float32_and_encodes(bert_dir, tmp_path, dtype):
    # e.g. a model trained in half precision on a GPU, served from a CPU
    from quaterion_models.heads import SkipConnectionHead

    encoder = TransformerEncoder(bert_dir)
    model = SimilarityModel(encoder, SkipConnectionHead(encoder.embedding_size))
    texts = ["a b", "c", "a c b"]
    expected = model.encode(texts, to_numpy=False)
    model.to(dtype).save(str(tmp_path / "servable"))
    loaded = SimilarityModel.load(str(tmp_path / "servable"))
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    saved = model.state_dict()
    for name, value in loaded.state_dict().items():  # the saved values, cast exactly
        torch.testing.assert_close(value, saved[name].float())
    tolerance = {torch.float16: 5e-3, torch.bfloat16: 3e-2, torch.float64: 1e-6}[dtype]
    result = loaded.encode(texts, to_numpy=False)
    torch.testing.assert_close(result, expected, atol=tolerance, rtol=tolerance)
