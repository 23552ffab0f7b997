"""Key extractors fingerprinted by what they compute; the default content sample."""

import functools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from quaterion.train.cache import CacheConfig
from quaterion.train.cache._callable_fingerprint import callable_fingerprint
from quaterion.train.cache._fingerprint import content_sample
from quaterion.train.cache._fingerprint import SAMPLE_SIZE, sample_positions
from tests.quaterion.train import helpers
from tests.quaterion.train.helpers import CountingEncoder, Model, fit_losses

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
OFFSET = 7


def _define(source: str):
    """The function ``key`` defined by ``source`` in a fresh namespace."""
    scope = {"OFFSET": OFFSET}
    exec(source, scope)
    return scope["key"]


class Rounding:
    """A callable object key extractor with public state."""

    def __init__(self, digits: int):
        self.digits = digits
        self._calls = 0

    def __call__(self, obj):
        self._calls += 1
        return tuple(round(float(x), self.digits) for x in obj)


def test_functions_are_told_apart_by_what_they_compute():
    plus_one = _define("def key(x): return x + 1")
    assert callable_fingerprint(plus_one) == callable_fingerprint(
        _define("def key(x): return x + 1")
    )
    assert callable_fingerprint(plus_one) != callable_fingerprint(
        _define("def key(x): return x + 2")
    )
    assert callable_fingerprint(plus_one) != callable_fingerprint(
        _define("def key(x): return x * 1")
    )
    renamed = _define("def other(x): return x + 1\nkey = other")
    assert callable_fingerprint(renamed) == callable_fingerprint(plus_one)  # not by name
    uses_global = _define("def key(x): return x + OFFSET")
    before = callable_fingerprint(uses_global)
    uses_global.__globals__["OFFSET"] = 8
    assert callable_fingerprint(uses_global) != before  # a constant it reads
    with_default = [_define(f"def key(x, n={n}): return x + n") for n in (1, 2)]
    assert callable_fingerprint(with_default[0]) != callable_fingerprint(with_default[1])
    closures = [
        _define(f"def make(n):\n    return lambda x: x + n\nkey = make({n})") for n in (1, 2)
    ]
    assert callable_fingerprint(closures[0]) != callable_fingerprint(closures[1])
    partials = [functools.partial(round, ndigits=n) for n in (1, 2)]
    assert callable_fingerprint(partials[0]) != callable_fingerprint(partials[1])


def test_callable_objects_fingerprint_by_class_code_and_public_state():
    assert callable_fingerprint(Rounding(2)) == callable_fingerprint(Rounding(2))
    assert callable_fingerprint(Rounding(2)) != callable_fingerprint(Rounding(3))
    used = Rounding(2)
    used((1.0,))
    assert callable_fingerprint(used) == callable_fingerprint(Rounding(2))  # private state


_PRINT = (
    "from tests.quaterion.train.cache.test_fingerprints import Rounding;"
    "from quaterion.train.cache._callable_fingerprint import callable_fingerprint as f;"
    "print(f(Rounding(2)), f(Rounding(2).__call__), f(lambda x: x))"
)


def test_fingerprints_are_stable_across_processes():
    outputs = [
        subprocess.run(
            [sys.executable, "-c", _PRINT],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": ROOT, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        for seed in ("1", "2")
    ]
    assert outputs[0] == outputs[1] and len(outputs[0].split()) == 3


def _by_value(obj):
    return tuple(round(float(x), 4) for x in obj)


def _fit_keyed(save_dir, key):
    encoder = CountingEncoder()
    config = CacheConfig(save_dir=str(save_dir), key_extractors=key)
    model = Model(encoders={"default": encoder}, cache_config=config)
    return encoder, fit_losses(model, helpers.group_loader(shuffle=True))


def test_key_extractor_body_change_rebuilds_and_a_callable_object_is_reused(tmp_path):
    first = _define("def key(obj):\n    return tuple(round(float(x), 4) for x in obj)")
    assert _fit_keyed(tmp_path / "a", first)[0].calls == 24
    assert _fit_keyed(tmp_path / "a", first)[0].calls == 0
    # same name, another body: keys of other objects; the cache must not be reused
    coarse = _define("def key(obj):\n    return round(float(obj[0]), 4)")
    with pytest.warns(UserWarning, match="key extractors changed"):
        encoder, losses = _fit_keyed(tmp_path / "a", coarse)
    assert encoder.calls == 24
    expected = fit_losses(Model(), helpers.group_loader(shuffle=True))
    torch.testing.assert_close(losses, expected)
    assert _fit_keyed(tmp_path / "b", Rounding(4))[0].calls == 24
    assert _fit_keyed(tmp_path / "b", Rounding(4))[0].calls == 0  # a new instance, reused


class Opaque:
    """No stable repr (the default one holds an address)."""


def _datasets():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(3).astype(np.float32) for _ in range(50)]
    images = [Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8)) for _ in range(40)]
    return {
        "tensors": [torch.randn(3) for _ in range(70)],
        "arrays": arrays,
        "strings": [f"record {i}" for i in range(45)],
        "dicts": [{"text": f"r{i}", "vector": torch.full((2,), float(i))} for i in range(40)],
        "images": images,
    }


def _changed(value):
    if isinstance(value, torch.Tensor):
        return value + 1
    if isinstance(value, np.ndarray):
        return value + np.float32(1e-3)
    if isinstance(value, str):
        return value + "!"
    if isinstance(value, dict):
        return {**value, "vector": value["vector"] + 1}
    pixels = np.array(value)
    pixels[0, 0, 0] ^= 1
    return Image.fromarray(pixels)


@pytest.mark.parametrize("kind", ["tensors", "arrays", "strings", "dicts", "images"])
def test_content_sample_sees_objects_in_the_sample_only(kind):
    data = _datasets()[kind]
    positions = sample_positions(len(data))
    assert len(positions) == SAMPLE_SIZE == len(set(positions))
    assert positions == sample_positions(len(data))  # seeded: the same every time
    assert content_sample(list(data)) == content_sample(data)
    inside = list(data)
    inside[positions[5]] = _changed(data[positions[5]])
    assert content_sample(inside) != content_sample(data)
    outside = list(data)
    gap = next(i for i in range(len(data)) if i not in positions)
    outside[gap] = _changed(data[gap])
    assert content_sample(outside) == content_sample(data)  # verify_content's job


def test_unhashable_objects_fall_back_to_their_type_with_a_warning():
    with pytest.warns(UserWarning, match="cannot hash objects of type Opaque"):
        assert content_sample([Opaque(), Opaque()]) == content_sample([Opaque(), Opaque()])


class _OwnGenerator(torch.utils.data.Dataset):
    """Items with noise from a generator of the dataset's own (seeded or not) or from
    torch's global one."""

    def __init__(self, source: str):
        self.source = source
        self.generator = torch.Generator().manual_seed(0) if source == "own" else None

    def __len__(self):
        return 40

    def __getitem__(self, index):
        if self.source == "own":
            return torch.rand(3, generator=self.generator)  # advances: never replayed
        return torch.rand(3) if self.source == "global" else torch.full((3,), float(index))


@pytest.mark.parametrize("source, warned", [("own", True), ("global", False), ("none", False)])
def test_an_unseeded_own_generator_is_named_at_once(source, warned, recwarn):
    dataset = _OwnGenerator(source)
    first = content_sample(dataset)
    named = [w for w in recwarn if "generator of its own" in str(w.message)]
    assert len(named) == (1 if warned else 0)
    # the global generator is seeded per item: the sample is the same in every read
    assert (content_sample(dataset) == first) is not warned
