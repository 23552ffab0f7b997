import pytest

from quaterion_models.utils.meta import merge_meta


def naive_merge(meta):
    keys = list(meta)
    n = len(meta[keys[0]]) if keys else 0
    result = []
    for i in range(n):
        record = {}
        for key in keys:
            for name, value in meta[key][i].items():
                record[name] = value
        result.append(record)
    return result


def test_spec_example():
    meta = {"e1": [{"a": 1}, {"a": 2}], "e2": [{"b": 3}, {"b": 4}]}
    assert merge_meta(meta) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]


def test_all_records_merged_without_aliasing():
    meta = {
        "e1": [{"a": 1}, {"a": 2}, {"a": 3}],
        "e2": [{"b": 4, "a": -1}, {"b": 5}, {"b": 6}],
    }
    original = {key: [dict(d) for d in records] for key, records in meta.items()}
    merged = merge_meta(meta)
    assert merged == naive_merge(original)
    assert merged[0] == {"a": -1, "b": 4}  # later encoder wins
    assert merged[2] == {"a": 3, "b": 6}
    assert meta == original
    assert all(m is not d for m, d in zip(merged, meta["e1"]))


def test_one_record_two_encoders_and_empty():
    assert merge_meta({"x": [{"a": 1}], "y": [{"b": 2}]}) == [{"a": 1, "b": 2}]
    assert merge_meta({}) == []
    with pytest.raises(ValueError, match="lengths"):
        merge_meta({"x": [{}], "y": [{}, {}]})
