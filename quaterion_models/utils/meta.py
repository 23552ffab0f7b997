"""Merge per-encoder meta information into one dict per record."""


def merge_meta(meta: dict[str, list[dict]]) -> list[dict]:
    """Combine per-encoder meta lists into one list of per-record dicts.

    Record ``i`` of the result is a fresh dict holding the union of record ``i`` of every
    encoder; later encoders win on clashing keys. Input dicts are never mutated.

    Args:
        meta: ``{encoder_key: [dict per record]}``; every list has the same length.

    Returns:
        ``List[dict]`` with one dict per record (``[]`` for an empty mapping).

    Example:
        >>> merge_meta({"e1": [{"a": 1}, {"a": 2}], "e2": [{"b": 3}, {"b": 4}]})
        [{'a': 1, 'b': 3}, {'a': 2, 'b': 4}]
    """
    lengths = {key: len(records) for key, records in meta.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"merge_meta: every encoder must give one meta dict per record, got lengths "
            f"{lengths}; make each meta extractor return len(batch) dicts"
        )
    return [
        {name: value for record in records for name, value in record.items()}
        for records in zip(*meta.values())
    ]
