"""ONNX export directories share the servable's swap: a dead export's temp directory is removed
by the next load, a running one's is kept (real child processes, see blocked_saves)."""

import shutil
from pathlib import Path

import pytest
import torch

from quaterion_models import SimilarityModel
from quaterion_models.onnx import OnnxSimilarityModel
from tests.quaterion_models.blocked_saves import Writer, temp_dirs


def _encodes_like(path: Path, model: SimilarityModel) -> None:
    texts = ["a query", "another text"]
    got = OnnxSimilarityModel.load(path).encode(texts)
    want = model.encode(texts, to_numpy=True)
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(want), atol=1e-5, rtol=0)


def test_an_export_killed_while_writing_is_cleaned_up_by_the_next_load(tmp_path, exported):
    model, source = exported
    models = tmp_path / "models"
    target = models / "export"
    shutil.copytree(source, target)
    writer = Writer(tmp_path, "export", target, source)
    try:
        [temp] = temp_dirs(models)
        writer.kill()
    finally:
        writer.close()
    assert temp.is_dir()
    _encodes_like(target, model)
    assert sorted(p.name for p in models.iterdir()) == ["export"]


def test_a_running_export_keeps_its_temp_directory_and_finishes(tmp_path, exported):
    model, source = exported
    models = tmp_path / "models"
    target = models / "export"
    writer = Writer(tmp_path, "export", target, source)  # a first export: no target yet
    try:
        [temp] = temp_dirs(models)
        assert (temp / "config.json").is_file()  # complete, but its writer is alive
        with pytest.raises(FileNotFoundError, match="is not an ONNX export"):
            OnnxSimilarityModel.load(target)
        assert temp_dirs(models) == [temp] and not target.exists()  # neither taken nor removed
        writer.finish()
    finally:
        writer.close()
    _encodes_like(target, model)
    assert sorted(p.name for p in models.iterdir()) == ["export"]
