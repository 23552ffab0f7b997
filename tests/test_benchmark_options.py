"""The benchmark scripts refuse counts, sizes and seeds that would crash deep inside torch or
numpy (``--n 0``) or print a meaningless figure (``search --n 0``: recall 0.0000;
``losses --repeats 0``: times of inf), at parse time with ``argument --name: ...``."""

import importlib
import sys

import pytest

CASES = [
    ("eval", "--n", "0", "positive integer"),
    ("eval", "--threads", "0", "positive integer"),
    ("eval", "--seed", "-1", "must be a seed"),
    ("cache", "--repeats", "0", "positive integer"),
    ("gather", "--steps", "0", "positive integer"),
    ("gradient_cache", "--steps", "0", "positive integer"),
    ("gradient_cache", "--threads", "-2", "integer >= 0"),
    ("index_eval", "--n", "-5", "positive integer"),
    ("index_eval", "--m", "-1", "integer >= 0"),
    ("losses", "--repeats", "0", "positive integer"),
    ("losses", "--csv", "/", "pass a file name in an existing directory"),
    ("losses", "--csv", "/no/such/dir/t.csv", "pass a file name in an existing directory"),
    ("mining", "--n", "0", "positive integer"),
    ("mining", "--seed", "x", "integer seed"),
    ("onnx", "--repeats", "0", "positive integer"),
    ("search", "--queries", "0", "positive integer"),
    ("search", "--n", "0", "positive integer"),
    ("finetune_quality", "--threads", "-1", "integer >= 0"),
    ("finetune_replay", "--mini-batch", "0", "positive integer"),
]


@pytest.mark.parametrize("name, flag, value, reason", CASES)
def test_bad_values_stop_at_parse_time(monkeypatch, capsys, name, flag, value, reason):
    module = importlib.import_module(f"benchmarks.{name}")
    monkeypatch.setattr(sys, "argv", [f"benchmarks/{name}.py", flag, value])
    with pytest.raises(SystemExit) as info:
        module.main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert (f"argument {flag}: " in err or f"error: {flag} " in err) and reason in err, err
