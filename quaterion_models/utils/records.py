"""Raw records on their way into a model: which inputs hold several records, chunking any
sequence or iterable, and collate errors that name the record and the encoder."""

from collections.abc import Mapping
from typing import Any, Callable, Optional


from quaterion_models.utils.meta import merge_meta
from quaterion_models.utils.record_inputs import chunks as chunks
from quaterion_models.utils.record_inputs import holds_records as holds_records


def collate_batch(
    batch: list,
    collates: Mapping[str, Callable],
    meta_extractors: Mapping[str, Callable],
    encoder_names: Optional[Mapping[str, str]] = None,
    start: int = 0,
) -> dict:
    """``{"data": {key: collate(batch)}, "meta": merged meta}``; a failing collate or meta
    extractor is re-raised as ``TypeError``/``ValueError`` naming the encoder and the record
    (its index counted from ``start``)."""
    data = {}
    for key, collate in collates.items():
        data[key] = _call(collate, batch, _owner(key, encoder_names), start)
    meta = {
        key: _call(extract, batch, _owner(key, encoder_names) + " meta extractor", start)
        for key, extract in meta_extractors.items()
    }
    return {"data": data, "meta": merge_meta(meta)}


def _owner(key: str, names: Optional[Mapping[str, str]]) -> str:
    kind = f" ({names[key]})" if names and key in names else ""
    return f"encoder {key!r}{kind}"


def _call(function: Callable, batch: list, owner: str, start: int) -> Any:
    try:
        return function(batch)
    except Exception as err:
        located = bad_record_error(function, batch, owner, start, err)
        if located is None:  # not one record's fault: keep the original error, say where
            err.add_note(f"in {owner} on records {start}..{start + len(batch) - 1}")
            raise
        raise located from err


def _describe(record: Any) -> str:
    shape = getattr(record, "shape", None)
    text = f"{type(record).__name__}"
    return f"{text} of shape {tuple(shape)}" if shape is not None else text


def bad_record_error(
    function: Callable, batch: list, owner: str, start: int, err: BaseException
) -> Optional[Exception]:
    """Find the record that makes ``function(batch)`` fail and build an error naming it.

    Records are tried in order: the first that fails on its own, or that differs in type or
    shape from the first record, is named. ``TypeError`` for type problems, else
    ``ValueError``; ``None`` if every record works on its own and all look alike.
    """
    said = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    first = batch[0] if batch else None
    for index, record in enumerate(batch):
        try:
            function([record])
        except Exception as alone:  # noqa: BLE001 - the record fails by itself
            cls = TypeError if isinstance(alone, TypeError) else ValueError
            return cls(
                f"{owner} cannot take record {start + index} ({_describe(record)}): {said}. "
                "Fix or drop that record"
            )
        if type(record) is not type(first) or getattr(record, "shape", None) != getattr(
            first, "shape", None
        ):
            cls = TypeError if type(record) is not type(first) else ValueError
            return cls(
                f"{owner} cannot batch record {start + index} ({_describe(record)}) with record "
                f"{start} ({_describe(first)}): records of one call must have the same type and "
                f"shape ({said})"
            )
    return None
