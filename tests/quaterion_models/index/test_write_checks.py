"""A write call is checked whole before its first point is written; errors name the row."""

import uuid

import numpy as np
import pytest
import torch

from quaterion_models.index import SimilarityIndex
from tests.quaterion_models.index.conftest import make_model, make_objects

pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact")

N, BAD = 24, 17  # 24 rows in batches of 5: row 17 sits in the 4th batch


def nan_objects() -> list:
    objects = make_objects(N)
    objects[BAD] = torch.full((8,), float("nan"))
    return objects


def with_row(value, row: int = BAD) -> list:
    payloads = [{"i": i} for i in range(N)]
    payloads[row] = value
    return payloads


def duplicate_ids() -> list:
    ids = list(range(N))
    ids[20] = 3
    return ids


def uuid_case_ids() -> list:
    ids = [str(uuid.UUID(int=i + 1)) for i in range(N)]
    ids[20] = ids[3].upper()  # the same UUID in capitals
    return ids


def _nested(depth: int) -> dict:
    payload = current = {}
    for _ in range(depth):
        current["a"] = {}
        current = current["a"]
    return payload


def _self_containing() -> dict:
    payload: dict = {"n": 1}
    payload["self"] = payload
    return payload


BAD_CALLS = {
    "nan vector after encoding": (
        lambda: {"objects": nan_objects()},
        ValueError,
        r"NaN or inf in 1 of 24 rows \(first: row 17\); nothing was written",
    ),
    "repeated int id": (
        lambda: {"ids": duplicate_ids()},
        ValueError,
        r"ids\[20\] = 3 repeats ids\[3\]",
    ),
    "repeated uuid in another case": (
        lambda: {"ids": uuid_case_ids()},
        ValueError,
        r"ids\[20\] .* repeats ids\[3\]",
    ),
    "set payload value": (
        lambda: {"payloads": with_row({"tags": {"a", "b"}})},
        TypeError,
        r"payloads\[17\]\['tags'\] is a set",
    ),
    "tensor payload value": (
        lambda: {"payloads": with_row({"v": torch.ones(2)})},
        TypeError,
        r"payloads\[17\]\['v'\] is a Tensor.*tolist",
    ),
    "numpy scalar": (
        lambda: {"payloads": with_row({"n": np.int64(3)})},
        TypeError,
        r"payloads\[17\]\['n'\] is a int64.*item",
    ),
    "tuple in a list": (
        lambda: {"payloads": with_row({"pairs": [[1, 2], (3, 4)]})},
        TypeError,
        r"payloads\[17\]\['pairs'\]\[1\] is a tuple",
    ),
    "int key": (lambda: {"payloads": with_row({1: "a"})}, TypeError, r"payloads\[17\] has key 1"),
    "nan payload": (
        lambda: {"payloads": with_row({"x": float("nan")})},
        ValueError,
        r"payloads\[17\]\['x'\] = nan",
    ),
    "huge int": (lambda: {"payloads": with_row({"x": 2**70})}, ValueError, r"64-bit"),
    "payload not a dict": (lambda: {"payloads": with_row([1])}, TypeError, r"payloads\[17\]"),
    "payload nested too deeply": (
        lambda: {"payloads": with_row(_nested(3000))},
        ValueError,
        r"payloads\[17\] is nested too deeply",
    ),
    "payload containing itself": (
        lambda: {"payloads": with_row(_self_containing())},
        ValueError,
        r"payloads\[17\] is nested too deeply.*contains itself",
    ),
    "negative id": (lambda: {"ids": [-1] + list(range(1, N))}, ValueError, r"ids\[0\]"),
    "float id": (lambda: {"ids": [0.5] + list(range(1, N))}, TypeError, r"ids\[0\] .* float"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
@pytest.mark.parametrize("method", ["add", "add_vectors"])
def test_a_bad_row_writes_nothing(location, case, method):
    make_call, error, message = BAD_CALLS[case]
    model = make_model()
    call = {"objects": make_objects(N), **make_call()}
    with SimilarityIndex(model, distance="cosine", batch_size=5, **location.kwargs()) as index:
        index.add(make_objects(2, seed=9), ids=[100, 101])  # already stored: must stay as is
        rows = call["objects"] if method == "add" else model.encode(call["objects"])
        with pytest.raises(error, match=message):
            getattr(index, method)(rows, payloads=call.get("payloads"), ids=call.get("ids"))
        assert index.count() == 2


def test_valid_payloads_read_back_unchanged(location):
    payloads = [
        {"nested": {"a": [1, 2.5, None, True, "x"]}, "empty": {}, "list": []},
        {"big": 2**63 - 1, "neg": -(2**63)},
    ]
    with SimilarityIndex(make_model(), distance="cosine", **location.kwargs()) as index:
        index.add(make_objects(2), payloads=payloads, ids=[0, 1])
        hits = index.search(make_objects(2), limit=1, exact=True)
    assert [h[0].payload for h in hits] == payloads


def test_a_lone_string_or_mapping_is_not_split_into_objects(location):
    from examples.models_demo import BagOfCharsEncoder
    from quaterion_models import SimilarityModel
    from quaterion_models.heads import EmptyHead

    model = SimilarityModel(encoders=BagOfCharsEncoder(dim=8), head=EmptyHead(8))
    with SimilarityIndex(model, distance="cosine", **location.kwargs()) as index:
        for lone in ("red car", b"red car", {"text": "red car"}):
            with pytest.raises(TypeError, match=r"add takes a list of objects.*pass \[obj\]"):
                index.add(lone)
            with pytest.raises(TypeError, match=r"search takes a list of objects"):
                index.search(lone)
        assert index.count() == 0  # list("red car") would have added 7 one-letter points
        ids = index.add(["red car", "a cat"], ids=[0, 1])
        assert ids == [0, 1] and index.count() == 2
        (hits,) = index.search(["red car"], limit=2)
        assert [hit.id for hit in hits] == [0, 1]
        expected = model.encode(["red car", "a cat"])
        cosine = (
            expected[1] @ expected[0] / np.linalg.norm(expected[0]) / np.linalg.norm(expected[1])
        )
        np.testing.assert_allclose([hit.score for hit in hits], [1.0, cosine], rtol=1e-5)


def test_a_path_that_is_not_a_path_is_refused():
    with pytest.raises(TypeError, match=r"path must be the index directory.*got int 5"):
        SimilarityIndex(make_model(), path=5, distance="cosine")


@pytest.mark.parametrize(
    "vectors, shown",
    [
        ([[0.0] * 8, [1.0]], "inhomogeneous"),
        ("abc", "could not convert string to float"),
        ([[{"x": 1}] * 8], "dict"),
    ],
)
def test_vectors_numpy_cannot_read_are_named(location, vectors, shown):
    """Ragged rows and strings failed in numpy's own words ("setting an array element with a
    sequence")."""
    with SimilarityIndex(make_model(), distance="cosine", **location.kwargs()) as index:
        index.add(make_objects(2), ids=[0, 1])
        expected = r"vectors must be a \(n, 8\) array of numbers"
        with pytest.raises(TypeError, match=expected) as info:
            index.search(vectors=vectors)
        assert shown in str(info.value) and "nothing was searched" in str(info.value)
        with pytest.raises(TypeError, match="nothing was written"):
            index.add_vectors(vectors, ids=[5, 6][: len(vectors)] if len(vectors) <= 2 else None)
        assert index.count() == 2
        stored = make_model().encode(make_objects(2))  # cosine: stored at unit length
        stored /= np.linalg.norm(stored, axis=1, keepdims=True)
        np.testing.assert_allclose(index.vectors([0, 1]), stored, rtol=1e-5, atol=1e-6)
