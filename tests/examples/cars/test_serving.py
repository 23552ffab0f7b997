"""Tests of ``python -m examples.cars.serving``."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from examples.cars import serving as cars_serving
from examples.cars.contact_sheet import GREEN, RED, border_colours
from examples.cars.data import get_datasets, get_raw_dataset
from quaterion_models import SimilarityModel
from quaterion_models.index import SimilarityIndex
from tests._ranking import assert_top_k

from .conftest import INPUT_SIZE


def test_serving_writes_images_labels_and_vectors(trained_cars, workdir):
    out = workdir / "embeddings"
    result = cars_serving.main(["--synthetic", "--input-size", str(INPUT_SIZE),
                                "--tuned-model", str(trained_cars["save_dir"]),
                                "--save-dir", str(out), "--num-queries", "4", "--top-k", "3"])  # fmt: skip

    _, raw_test = get_raw_dataset(INPUT_SIZE, split_cache_path=None, synthetic=True)
    n = len(raw_test)
    assert n == 196
    lines = (out / "labels.jsonl").read_text().splitlines()
    labels = [json.loads(line)["label"] for line in lines]
    assert labels == [int(raw_test[i][1]) for i in range(n)]
    assert all(type(label) is int for label in labels)
    jpegs = sorted((out / "imgs").glob("*.jpg"))
    assert len(jpegs) == n
    with Image.open(out / "imgs" / "0.jpg") as image:
        assert image.format == "JPEG" and image.size == (INPUT_SIZE, INPUT_SIZE)

    original = np.load(out / "original.npy", allow_pickle=False)
    tuned = np.load(out / "tuned.npy", allow_pickle=False)
    model = SimilarityModel.load(str(trained_cars["save_dir"]))
    assert original.shape == (n, 2048)
    assert tuned.shape == (n, model.head.output_size)

    # Row i is test image i: recompute with the servable, independently of the script.
    _, test = get_datasets(INPUT_SIZE, split_cache_path=None, synthetic=True)
    expected = model.encode([test[i].obj for i in range(n)], to_numpy=True)
    np.testing.assert_allclose(tuned, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(original, tuned)

    # The search: the index answered each query image with the exact cosine neighbours of
    # the tuned vectors (its own row left out), and the sheet frames them by car model.
    unit = tuned / np.linalg.norm(tuned, axis=1, keepdims=True)
    rows = result["query_rows"]
    assert len(rows) == 4 == len(set(rows))
    for row, hit_ids, same in zip(rows, result["hit_ids"], result["same"]):
        scores = unit @ unit[row]
        scores[row] = -np.inf
        assert len(hit_ids) == 3
        assert_top_k(hit_ids, scores)
        assert same == [labels[i] == labels[row] for i in hit_ids]
    with Image.open(result["contact_sheet"]) as sheet:
        assert sheet.format == "PNG"
        colours = border_colours(sheet.convert("RGB"), rows=4, columns=3)
    expected = [[GREEN if match else RED for match in same] for same in result["same"]]
    assert colours == expected
    with SimilarityIndex.open(model, path=result["index_dir"]) as index:
        assert index.count() == n and index.distance == "cosine"


def test_serving_distance_is_the_training_loss_distance():
    from examples.cars.models import Model

    loss = Model.configure_loss(SimpleNamespace(mining="hard"))
    assert cars_serving.DISTANCE == loss.distance_metric_name


def test_a_save_dir_that_is_a_file_is_named_in_the_error(trained_cars, workdir):
    a_file = workdir / "embeddings"
    a_file.write_text("not a folder")
    with pytest.raises(SystemExit) as info:
        cars_serving.main(["--synthetic", "--input-size", str(INPUT_SIZE),
                           "--tuned-model", str(trained_cars["save_dir"]),
                           "--save-dir", str(a_file)])  # fmt: skip
    assert str(info.value) == f"error: --save-dir {a_file} is a file; pass a directory path"
    assert a_file.read_text() == "not a folder"
