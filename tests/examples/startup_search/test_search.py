"""``python -m examples.startup_search.search``: offline search over an embedded index."""

import json

import numpy as np
import pytest

from examples.startup_search import search as startup_search
from quaterion_models import SimilarityModel
from quaterion_models.heads import GatedHead
from tests._ranking import assert_top_k

RECORDS = [
    {"name": "PayFast", "description": "Instant payments for credit unions.", "industry": "Fintech"},
    {"name": "LoanLy", "description": "Fair loans for freelancers.", "industry": "Fintech"},
    {"name": "CoinBox", "description": "A savings app for teenagers.", "industry": "Fintech"},
    {"name": "ClassHub", "description": "Online courses for teachers.", "industry": "Education"},
    {"name": "TutorGo", "description": "Homework help for pupils.", "industry": "Education"},
    {"name": "PulseMe", "description": "Remote monitoring of heart patients.", "industry": "Healthcare"},
    {"name": "MediBot", "description": "A chatbot that books doctor visits.", "industry": "Healthcare"},
    {"name": "FarmEye", "description": "Drones that watch crops for disease.", "industry": "Agritech"},
]  # fmt: skip


@pytest.fixture
def dataset(workdir):
    path = workdir / "startups.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return str(path)


def test_search_ranks_like_brute_force_and_filters(dataset, encoded, no_network, capsys):
    queries = ["money transfers for banks", "learning at school"]
    answers = startup_search.main([*queries, "-k", "3", "--dataset", dataset, "--model", "none"])
    assert len(encoded) == len(RECORDS) + len(queries)  # indexed once, queries once
    model = startup_search.load_model(None)
    docs = model.encode([r["description"] for r in RECORDS])
    q = model.encode(queries)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for answer, scores in zip(answers, q @ docs.T):
        assert_top_k([row["id"] for row in answer], scores)
        np.testing.assert_allclose([row["score"] for row in answer], np.sort(scores)[::-1][:3],
                                   atol=1e-4)  # fmt: skip
        assert answer[0]["name"] == RECORDS[answer[0]["id"]]["name"]
    assert answers[0][0]["industry"] == "Fintech" and answers[1][0]["industry"] == "Education"
    out, captured_err = capsys.readouterr()
    assert "'money transfers for banks':" in out and "1. " in out
    assert "Model: the raw encoder" in out and "no servable at 'none'" in out
    assert f"Indexing {len(RECORDS)} startups into startups-index: done in" in out
    assert "Indexing:" not in captured_err  # no tqdm bar off a terminal (it printed 100% twice)

    encoded.clear()  # the second run reuses the index: only the query is encoded
    health = startup_search.main(["money", "--industry", "Healthcare", "--industry", "Agritech",
                                  "--dataset", dataset, "--model", "none", "--json"])  # fmt: skip
    assert encoded == ["money"]
    assert {row["industry"] for row in health[0]} == {"Healthcare", "Agritech"}
    assert len(health[0]) == 3
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    assert [line["id"] for line in lines] == [row["id"] for row in health[0]]
    assert "Model: the raw encoder" in captured.err  # stdout stays JSON lines


def test_a_new_model_reindexes(dataset, encoded, no_network, capsys, workdir):
    startup_search.main(["payments", "--dataset", dataset, "--model", "none"])
    raw = startup_search.load_model(None)
    encoder = raw.encoders["default"]
    SimilarityModel(encoders=encoder, head=GatedHead(encoder.embedding_size)).save("tuned")
    encoded.clear()
    startup_search.main(["payments", "--dataset", dataset, "--model", "tuned"])
    captured = capsys.readouterr()
    assert "indexing again with the current model" in captured.err
    assert f"Model: the trained servable {workdir / 'tuned'}" in captured.out
    assert len(encoded) == len(RECORDS) + 1


def test_a_damaged_model_exits_with_the_file(workdir, no_network):
    damaged = workdir / "startups"
    damaged.mkdir()
    (damaged / "config.json").write_text('{"encoders": [')  # a copy that stopped early
    with pytest.raises(SystemExit) as info:
        startup_search.main(["a query", "--model", str(damaged), "--index-dir", str(workdir / "i")])
    assert str(info.value).startswith(f"error: --model {damaged}: ")
    assert str(damaged / "config.json") in str(info.value)
