"""Tests of the class split and its checked on-disk cache."""

import os
import pickle

import numpy as np
import pytest
import torch

from examples.cars.split import keyed_split_path, load_or_create_split, split_by_class

LABELS = np.repeat(np.arange(196), 3)  # 3 items per class


def test_split_halves_the_classes_disjointly():
    train_idx, test_idx = split_by_class(LABELS, 196, seed=42)
    train_classes, test_classes = set(LABELS[train_idx]), set(LABELS[test_idx])
    assert len(train_classes) == len(test_classes) == 98
    assert not train_classes & test_classes
    assert train_classes | test_classes == set(range(196))
    assert sorted(np.concatenate([train_idx, test_idx]).tolist()) == list(range(len(LABELS)))
    # The seed decides the split.
    other, _ = split_by_class(LABELS, 196, seed=7)
    assert set(LABELS[other]) != train_classes


def test_cached_split_is_reused_when_it_matches(tmp_path):
    path = str(tmp_path / "split.pkl")
    first = load_or_create_split(path, LABELS, 196, 42, "synthetic")
    mtime = (tmp_path / "split.pkl").stat().st_mtime_ns
    second = load_or_create_split(path, LABELS, 196, 42, "synthetic")
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert (tmp_path / "split.pkl").stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    "change",
    [
        {"labels": np.repeat(np.arange(196), 2)},  # another dataset
        {"seed": 3},
        {"source": "real"},
    ],
)
def test_stale_split_file_is_recomputed(tmp_path, capsys, change):
    path = str(tmp_path / "split.pkl")
    load_or_create_split(path, LABELS, 196, 42, "synthetic")
    args = {"labels": LABELS, "seed": 42, "source": "synthetic", **change}
    train_idx, test_idx = load_or_create_split(
        path, args["labels"], 196, args["seed"], args["source"]
    )
    assert "recomputing" in capsys.readouterr().err
    expected = split_by_class(args["labels"], 196, args["seed"])
    np.testing.assert_array_equal(train_idx, expected[0])
    np.testing.assert_array_equal(test_idx, expected[1])


def test_unreadable_split_file_is_recomputed(tmp_path, capsys):
    path = tmp_path / "split.pkl"
    path.write_bytes(b"not a torch file")
    train_idx, _ = load_or_create_split(str(path), LABELS, 196, 42, "synthetic")
    assert "unreadable" in capsys.readouterr().err
    np.testing.assert_array_equal(train_idx, split_by_class(LABELS, 196, 42)[0])


def test_falsy_path_computes_without_writing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train_idx, _ = load_or_create_split(None, LABELS, 196, 42, "real")
    assert len(train_idx) == 98 * 3
    assert list(tmp_path.iterdir()) == []


def test_split_file_name_is_keyed_by_source_and_seed():
    assert keyed_split_path("split_cache.pkl", "real", 42) == "split_cache.pkl"
    assert (
        keyed_split_path("split_cache.pkl", "synthetic", 42) == "split_cache_synthetic_seed42.pkl"
    )
    assert keyed_split_path("d/split_cache.pkl", "real", 1) == "d/split_cache_real_seed1.pkl"


class _RunsCode:
    """Unpickling this calls ``open(marker, "w")``: a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_malicious_split_file_runs_no_code_and_is_recomputed(tmp_path, capsys, how):
    path, marker = tmp_path / "split.pkl", str(tmp_path / "code_ran")
    payload = {"format": 1, "train_indices": _RunsCode(marker)}
    if how == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    train_idx, _ = load_or_create_split(str(path), LABELS, 196, 42, "synthetic")
    assert not os.path.exists(marker)
    assert "unreadable" in capsys.readouterr().err
    np.testing.assert_array_equal(train_idx, split_by_class(LABELS, 196, 42)[0])
    # the file was replaced by a clean record that is reused
    again, _ = load_or_create_split(str(path), LABELS, 196, 42, "synthetic")
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(again, train_idx)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r.update(train_indices=r["train_indices"][:-1]),  # an item lost
        lambda r: r.update(test_indices=r["test_indices"] + 10**6),  # out of range
        lambda r: r.update(train_indices=r["train_indices"].float()),  # wrong dtype
        lambda r: r.clear() or r.update(x=[1, 2]),  # not a split record
    ],
    ids=["lost-item", "out-of-range", "float", "other-dict"],
)
def test_split_file_with_invalid_indices_is_recomputed(tmp_path, capsys, tamper):
    path = str(tmp_path / "split.pt")
    load_or_create_split(path, LABELS, 196, 42, "synthetic")
    record = torch.load(path, weights_only=True)
    tamper(record)
    torch.save(record, path)
    train_idx, test_idx = load_or_create_split(path, LABELS, 196, 42, "synthetic")
    assert "recomputing" in capsys.readouterr().err
    expected = split_by_class(LABELS, 196, 42)
    np.testing.assert_array_equal(train_idx, expected[0])
    np.testing.assert_array_equal(test_idx, expected[1])


def test_split_file_that_is_a_list_is_recomputed(tmp_path, capsys):
    path = tmp_path / "split.pt"
    torch.save([1, 2, 3], path)
    train_idx, _ = load_or_create_split(str(path), LABELS, 196, 42, "synthetic")
    assert "not a split record" in capsys.readouterr().err
    np.testing.assert_array_equal(train_idx, split_by_class(LABELS, 196, 42)[0])
