"""Tests of the templated startup records and the shipped sample."""

import json
from collections import Counter

from examples.startup_search import make_sample_dataset
from examples.startup_search.synthetic import INDUSTRIES, generate_startups


def test_records_have_the_upstream_fields():
    records = generate_startups(40, seed=1)
    assert len(records) == 40
    assert all(set(r) == {"name", "description", "industry"} for r in records)
    assert all(r["name"] in r["description"] for r in records)
    assert Counter(r["industry"] for r in records) == {name: 5 for name in INDUSTRIES}
    assert generate_startups(40, seed=1) == records
    assert generate_startups(40, seed=2) != records


def test_descriptions_use_their_industry_vocabulary():
    for record in generate_startups(80, seed=3):
        vocab = INDUSTRIES[record["industry"]]
        assert any(product in record["description"] for product in vocab["products"])
        assert any(goal in record["description"] for goal in vocab["goals"])


def test_shipped_sample_is_what_the_script_writes(tmp_path):
    written = make_sample_dataset.main(["--output", str(tmp_path / "sample.jsonl")])
    with open(written, encoding="utf-8") as file:
        regenerated = file.read()
    with open(make_sample_dataset.SAMPLE_PATH, encoding="utf-8") as file:
        shipped = file.read()
    assert shipped == regenerated
    records = [json.loads(line) for line in shipped.splitlines()]
    assert len(records) == make_sample_dataset.SAMPLE_SIZE
    assert len({r["industry"] for r in records}) == len(INDUSTRIES)
