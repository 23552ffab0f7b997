"""Tests of ``python -m examples.cars.serving``."""

import json

import numpy as np
from PIL import Image

from examples.cars import serving as cars_serving
from examples.cars.data import get_datasets, get_raw_dataset
from quaterion_models import SimilarityModel

from .conftest import INPUT_SIZE


def test_serving_writes_images_labels_and_vectors(trained_cars, workdir):
    out = workdir / "embeddings"
    cars_serving.main(["--synthetic", "--input-size", str(INPUT_SIZE),
                       "--tuned-model", str(trained_cars["save_dir"]), "--save-dir", str(out)])  # fmt: skip

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
