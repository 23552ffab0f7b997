"""Both index backends behind one fixture: Qdrant Edge in a directory, qdrant-client local mode."""

import pytest
import qdrant_client
import qdrant_edge  # noqa: F401  (the qdrant extra: a missing one fails, never skips)
import torch

from quaterion_models import SimilarityModel
from quaterion_models.heads import GatedHead
from tests.quaterion_models.toy_encoders import StackEncoder


def make_model(dim: int = 8, seed: int = 0) -> SimilarityModel:
    """Identity encoder + gated head: vector = input * sigmoid(gates); weights set by ``seed``."""
    torch.manual_seed(seed)
    head = GatedHead(dim)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.normal_()
    return SimilarityModel(encoders=StackEncoder(dim), head=head)


def make_objects(n: int, dim: int = 8, seed: int = 1) -> list:
    generator = torch.Generator().manual_seed(seed)
    return list(torch.randn(n, dim, generator=generator))


class Location:
    """Where an index lives; ``kwargs()`` is what SimilarityIndex takes to reach it."""

    def __init__(self, backend: str, tmp_path):
        self.backend = backend
        self.dir = tmp_path / "index"
        self.client = None

    def kwargs(self) -> dict:
        if self.backend == "embedded":
            return {"path": self.dir, "show_progress": False}
        if self.client is None:
            self.client = qdrant_client.QdrantClient(path=str(self.dir))
        return {"client": self.client, "collection": "test", "show_progress": False}

    def release(self) -> None:
        """Close the local-mode client (it locks its directory) so another process can open it."""
        if self.client is not None:
            self.client.close()
            self.client = None

    def python_kwargs(self) -> str:
        """The same kwargs as Python source, for a subprocess."""
        if self.backend == "embedded":
            return f"path={str(self.dir)!r}, show_progress=False"
        return (
            f"client=QdrantClient(path={str(self.dir)!r}), collection='test', show_progress=False"
        )


@pytest.fixture(params=["embedded", "server"])
def location(request, tmp_path):
    loc = Location(request.param, tmp_path)
    yield loc
    loc.release()
