"""Serving from an ONNX export: with SimilarityIndex, and in a process where torch (and the
transformers stack) cannot be imported at all."""

import json
import textwrap

import numpy as np

from quaterion_models.index import SimilarityIndex
from quaterion_models.onnx import OnnxSimilarityModel
from tests._run import blocking_prelude, run_python
from tests.quaterion_models.tiny_models import TEXTS

CORPUS = TEXTS + ["engines and wheels", "roads every day", "upper case text", "short"]
QUERIES = ["a text about engines", "case"]


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> list:
    """Cosine top-k by a plain loop (ids = row numbers)."""
    ranked = []
    for query in queries:
        scores = [
            float(np.dot(query, row) / (np.linalg.norm(query) * np.linalg.norm(row)))
            for row in vectors
        ]
        ranked.append(sorted(range(len(scores)), key=lambda i: -scores[i])[:k])
    return ranked


def test_index_built_with_torch_is_searched_with_the_export(exported, tmp_path):
    model, path = exported
    index_dir = tmp_path / "index"
    with SimilarityIndex(model, path=index_dir, distance="cosine", show_progress=False) as index:
        index.add(CORPUS, ids=list(range(len(CORPUS))))
    onnx_model = OnnxSimilarityModel.load(path)
    with SimilarityIndex.open(onnx_model, path=index_dir, show_progress=False) as index:
        hits = index.search(QUERIES, limit=3, exact=True)
    expected = brute_force(model.encode(CORPUS), model.encode(QUERIES), 3)
    assert [[hit.id for hit in row] for row in hits] == expected
    # the export directory itself is accepted as the model, like a servable directory
    with SimilarityIndex.open(str(path), path=index_dir, show_progress=False) as index:
        assert isinstance(index.model, OnnxSimilarityModel) and index.count() == len(CORPUS)


SCRIPT = blocking_prelude(
    "torch",
    "transformers",
    "sentence_transformers",
    "torchvision",
    "pytorch_lightning",
    "quaterion",
) + textwrap.dedent(
    """
    import json


    from quaterion_models.index import SimilarityIndex
    from quaterion_models.onnx import OnnxSimilarityModel

    export_dir, index_dir, corpus, queries = json.loads(sys.argv[1])
    model = OnnxSimilarityModel.load(export_dir)
    vectors = model.encode(corpus, batch_size=3)
    with SimilarityIndex(model, path=index_dir, distance="cosine", show_progress=False) as index:
        index.add(corpus, ids=list(range(len(corpus))))
        hits = index.search(queries, limit=3, exact=True)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({
        "vectors": vectors.tolist(),
        "hits": [[hit.id for hit in row] for row in hits],
        "leaked": leaked,
    }))
    """
)


def test_encode_and_search_in_a_process_without_torch(exported, tmp_path):
    model, path = exported
    arguments = json.dumps([str(path), str(tmp_path / "index"), CORPUS, QUERIES])
    result = run_python("-c", SCRIPT, arguments, timeout=300)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["leaked"] == []
    vectors = np.asarray(output["vectors"], dtype=np.float32)
    expected = model.encode(CORPUS)
    np.testing.assert_allclose(vectors, expected, atol=1e-5, rtol=0)
    assert output["hits"] == brute_force(expected, model.encode(QUERIES), 3)
