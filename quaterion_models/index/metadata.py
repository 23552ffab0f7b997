"""What an index records about the servable that built it, and its durable JSON file."""

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

from quaterion_models.utils.atomic import atomic_write

#: Name of the metadata file inside an embedded index directory.
METADATA_FILE = "index.json"
#: Value of the ``format`` field, so a stray JSON file is not mistaken for an index.
FORMAT = "quaterion-similarity-index"
FORMAT_VERSION = 1

#: quaterion distance name -> the Qdrant distance name used by both backends.
QDRANT_DISTANCES = {
    "cosine": "Cosine",
    "dot_product": "Dot",
    "euclidean": "Euclid",
    "manhattan": "Manhattan",
}


@dataclass(frozen=True)
class HnswParams:
    """HNSW graph parameters of an index, fixed at creation (Qdrant's meaning and defaults).

    Args:
        m: edges per node (more: better recall, more memory).
        ef_construct: candidates considered while building (more: better graph, slower build).
        full_scan_threshold: in KB of vectors: a segment (or a filter's matches) smaller than
            this is searched exhaustively even when a graph exists. Lower it to search small
            collections through the graph; filtered searches then go through the graph too,
            which may miss points of rare payload values.
    """

    m: int = 16
    ef_construct: int = 100
    full_scan_threshold: int = 10000

    def __post_init__(self):
        for name, low in (("m", 2), ("ef_construct", 4), ("full_scan_threshold", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")

    @classmethod
    def from_dict(cls, data: Any, source: str) -> "HnswParams":
        """Parse the stored ``hnsw`` field; ``ValueError`` naming ``source`` if damaged."""
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: damaged 'hnsw' field {data!r} ({err})") from None


@dataclass(frozen=True)
class IndexInfo:
    """The binding between an index and a servable.

    Args:
        fingerprint: :func:`~quaterion_models.index.fingerprint.servable_fingerprint`.
        model: one-line description of the servable (for error messages).
        distance: quaterion distance name (``"cosine"``, ``"dot_product"``,
            ``"euclidean"``, ``"manhattan"``).
        dim: vector size.
        hnsw: HNSW parameters it was created with (``None``: an index created before they
            were recorded, built with Qdrant's defaults).
    """

    fingerprint: str
    model: str
    distance: str
    dim: int
    hnsw: Optional[HnswParams] = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the format tag, as stored."""
        return {"format": FORMAT, "version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, source: str) -> "IndexInfo":
        """Parse :meth:`to_dict` output; ``ValueError`` naming ``source`` if it is not one."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(
                f"{source} is not quaterion index metadata (no format={FORMAT!r}); open an index "
                "created by quaterion_models.index.SimilarityIndex or pass another location"
            )
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{source} has index format version {data.get('version')!r}; this quaterion "
                f"reads version {FORMAT_VERSION}: re-create the index with recreate=True"
            )
        missing = [name for name in ("fingerprint", "model", "distance", "dim") if name not in data]
        if missing:
            raise ValueError(
                f"{source} is damaged: it lacks {', '.join(map(repr, missing))}; re-create the "
                "index (recreate=True)"
            )
        try:
            dim = int(data["dim"])
        except (TypeError, ValueError):
            raise ValueError(f"{source}: damaged 'dim' field {data['dim']!r}") from None
        return cls(
            fingerprint=str(data["fingerprint"]),
            model=str(data["model"]),
            distance=str(data["distance"]),
            dim=dim,
            hnsw=None if data.get("hnsw") is None else HnswParams.from_dict(data["hnsw"], source),
        )


def check_distance(name: Any) -> str:
    """Normalise a distance (a ``Distance`` member or its value) to its string value."""
    value = getattr(name, "value", name)
    if value not in QDRANT_DISTANCES:
        raise ValueError(
            f"unknown distance {name!r}: use one of {sorted(QDRANT_DISTANCES)} (the distance "
            "the model was trained with, e.g. loss.distance_metric_name)"
        )
    return value


def write_metadata(directory: Union[str, os.PathLike], info: IndexInfo) -> None:
    """Write ``index.json`` with :func:`~quaterion_models.utils.atomic.atomic_write`."""
    with atomic_write(Path(directory) / METADATA_FILE, "w") as file:
        json.dump(info.to_dict(), file, indent=2)


def read_metadata(directory: Union[str, os.PathLike]) -> IndexInfo:
    """Read ``index.json`` of an embedded index directory."""
    path = Path(directory) / METADATA_FILE
    with open(path, encoding="utf-8") as file:
        try:
            data = json.load(file)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path} is not valid JSON ({err}); re-create the index (recreate=True)"
            ) from err
    return IndexInfo.from_dict(data, str(path))
