"""Gradient cache: tensors that require grad but are not parameters of the step (a leaf kept
as a plain attribute, a tensor captured from outside, a parameter of a module that is not
a sub-module) get exactly the gradient plain full-batch training gives them."""

import pytest
import torch

from quaterion.utils.testing import count_host_syncs
from tests.quaterion.train import gradient_cache_helpers as h

MINI = 5  # 22 records -> 5, 5, 5, 5, 2


def _models(dtype, case="triplet_hard", mini=MINI):
    name = str(dtype).split(".")[-1]
    plain = h.CachedModel({"default": h.LeafEncoder(name)}, h.loss_for(case, dtype), None)
    cached = h.CachedModel({"default": h.LeafEncoder(name)}, h.loss_for(case, dtype), mini)
    for model in (plain, cached):
        h.attach_trainer(model)
    return plain, cached


@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("case", ["triplet_hard", "mnrl", "arcface"])
def test_leaves_outside_the_parameters_get_the_full_batch_gradient(case, dtype, rtol):
    plain, cached = _models(dtype, case)
    batch = h.first_batch(plain, h.loader_for(case, dtype))
    h.fresh_shift(dtype)
    plain.training_step(batch, 0).backward()
    expected, expected_params = h.leaf_grads(plain), h.grads_of(plain)
    h.fresh_shift(dtype)
    loss, got_params = h.cached_step(cached, batch)
    h.assert_same_grads(h.leaf_grads(cached), expected, rtol)
    h.assert_same_grads(got_params, expected_params, rtol)


def test_leaf_gradients_accumulate_like_plain_training():
    # a second step without zeroing adds to the leaves' gradients, as autograd does
    plain, cached = _models(torch.float64)
    batch = h.first_batch(plain, h.loader_for("triplet_hard", torch.float64))
    h.fresh_shift(torch.float64)
    for _ in range(2):
        plain.training_step(batch, 0).backward()
    expected = h.leaf_grads(plain)
    h.fresh_shift(torch.float64)
    for _ in range(2):
        cached.training_step(batch, 0).backward()
    h.assert_same_grads(h.leaf_grads(cached), expected, 1e-10)


class OnlyOutsideLeaves(h.LeafEncoder):
    """Every registered parameter frozen: only the outside leaves train."""

    def __init__(self, dtype: str):
        super().__init__(dtype)
        for parameter in self.parameters():
            parameter.requires_grad_(False)


def test_a_model_whose_only_trainable_tensors_are_outside_leaves():
    def build(mini):
        encoder = OnlyOutsideLeaves("float64")
        model = h.CachedModel({"default": encoder}, h.loss_for("triplet_hard", torch.float64), mini)
        for parameter in model.model.head.parameters():
            parameter.requires_grad_(False)
        h.attach_trainer(model)
        return model

    plain, cached = build(None), build(MINI)
    assert not any(p.requires_grad for p in cached.parameters())
    batch = h.first_batch(plain, h.loader_for("triplet_hard", torch.float64))
    h.fresh_shift(torch.float64)
    plain.training_step(batch, 0).backward()
    expected = h.leaf_grads(plain)
    h.fresh_shift(torch.float64)
    cached.training_step(batch, 0).backward()
    h.assert_same_grads(h.leaf_grads(cached), expected, 1e-10)


def test_outside_leaves_add_no_host_sync():
    plain, cached = _models(torch.float32)
    batch = h.first_batch(plain, h.loader_for("triplet_hard", torch.float32))
    counts = []
    for model in (plain, cached):
        h.fresh_shift(torch.float32)
        with count_host_syncs() as counter:
            model.training_step(batch, 0).backward()
        counts.append(counter)
    assert counts[1].total == counts[0].total, f"plain {counts[0]}, cached {counts[1]}"


class _Counting(h.DropoutEncoder):
    def __init__(self):
        super().__init__("float64", trainable=False)
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        return super().forward(batch)


@pytest.mark.parametrize("case", ["arcface", "triplet_hard"])
def test_a_frozen_model_is_encoded_once_and_the_loss_still_learns(case):
    # nothing in the model trains (frozen encoder, frozen head): no second pass, and a
    # loss with parameters of its own gets the plain gradient
    def build(mini):
        model = h.CachedModel({"default": _Counting()}, h.loss_for(case, torch.float64), mini)
        for parameter in model.model.parameters():
            parameter.requires_grad_(False)
        h.attach_trainer(model)
        return model

    plain, cached = build(None), build(MINI)
    batch = h.first_batch(plain, h.loader_for(case, torch.float64))
    expected = plain.training_step(batch, 0)
    loss = cached.training_step(batch, 0)
    assert cached.model.encoders["default"].calls == 5  # 22 records: 5 mini-batches, once
    if case == "arcface":
        expected.backward()
        cached.zero_grad(set_to_none=True)
        loss.backward()
        assert h.grads_of(plain).keys() == {"_loss.kernel"}
        h.assert_same_grads(h.grads_of(cached), h.grads_of(plain), 1e-10)
    else:  # nothing trains at all, as in plain training
        assert not loss.requires_grad and not expected.requires_grad


def test_a_hook_changing_a_parameter_gradient_runs_once_on_the_sum():
    # e.g. a scaling or clipping hook: the re-encoding goes through aliases of the
    # parameters, so the hook sees the summed gradient once, as in plain training
    plain, cached = _models(torch.float64)
    batch = h.first_batch(plain, h.loader_for("triplet_hard", torch.float64))
    calls = []
    for model in (plain, cached):
        weight = model.model.encoders["default"].first.weight
        weight.register_hook(lambda grad: calls.append(1) or grad * 3)
    h.fresh_shift(torch.float64)
    plain.training_step(batch, 0).backward()
    h.fresh_shift(torch.float64)
    loss, got = h.cached_step(cached, batch)
    assert calls == [1, 1]
    h.assert_same_grads(got, h.grads_of(plain), 1e-10)


class _TiedAndParametrized(h.DropoutEncoder):
    """A weight shared by two layers, a weight-norm parametrization, a parameter list."""

    def __init__(self):
        super().__init__("float64")
        self.mirror = torch.nn.Linear(h.IN_DIM, 8, dtype=torch.float64)
        self.mirror.weight = self.first.weight  # tied
        torch.nn.utils.parametrizations.weight_norm(self.second)
        self.scales = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(8).double())])

    def forward(self, batch):
        hidden = torch.tanh(self.first(batch) + 0.5 * self.mirror(batch)) * self.scales[0]
        return self.second(hidden)


def test_tied_and_parametrized_parameters_through_the_aliases():
    def build(mini):
        torch.manual_seed(0)
        loss = h.loss_for("triplet_hard", torch.float64)
        model = h.CachedModel({"default": _TiedAndParametrized()}, loss, mini)
        h.attach_trainer(model)
        return model

    plain, cached = build(None), build(MINI)
    batch = h.first_batch(plain, h.loader_for("triplet_hard", torch.float64))
    _, expected = h.sequential_step(plain, batch, MINI)
    _, got = h.cached_step(cached, batch)
    assert "_model.default.second.parametrizations.weight.original1" in got
    assert "_model.default.scales.0" in got
    h.assert_same_grads(got, expected, 1e-10)


class _CheckpointedLeafEncoder(h.LeafEncoder):
    """:class:`LeafEncoder` whose first layer runs under ``torch.utils.checkpoint``."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        first = torch.utils.checkpoint.checkpoint(self.first, batch, use_reentrant=False)
        hidden = torch.tanh(first) * self.scale + h.OUTSIDE["shift"]
        return self.second(torch.tanh(self.hidden[0](hidden)))


@pytest.mark.parametrize("checkpointed", [False, True])
def test_a_hook_on_an_outside_leaf_runs_once_on_the_sum(checkpointed):
    # the re-encoding reads the outside leaves through aliases too: a hook changing their
    # gradient sees the full-batch gradient once, as in plain training (it ran per
    # mini-batch and again on the sum, tripling the gradient here)
    plain, cached = _models(torch.float64)
    if checkpointed:
        for model in (plain, cached):
            model.model.encoders["default"].__class__ = _CheckpointedLeafEncoder
    batch = h.first_batch(plain, h.loader_for("triplet_hard", torch.float64))
    calls = {}
    got = {}
    for name, model in (("plain", plain), ("cached", cached)):
        h.fresh_shift(torch.float64)
        calls[name] = []
        hooked = calls[name]
        h.OUTSIDE["shift"].register_hook(lambda grad, hooked=hooked: hooked.append(1) or grad * 3)
        model.model.encoders["default"].scale.register_hook(lambda grad: -grad)
        model.zero_grad(set_to_none=True)
        model.training_step(batch, 0).backward()
        got[name] = {**h.leaf_grads(model), **h.grads_of(model)}
    assert calls == {"plain": [1], "cached": [1]}
    h.assert_same_grads(got["cached"], got["plain"], 1e-10)


class _ReadByReference(h.DropoutEncoder):
    """Reads its first weight through its layer and through a plain reference to it."""

    def __init__(self):
        super().__init__("float64")
        self.tied = [self.first.weight]

    def forward(self, batch):
        by_reference = torch.nn.functional.linear(batch, self.tied[0])
        return self.second(torch.tanh(self.first(batch) + 0.5 * by_reference))


def test_a_parameter_read_by_reference_runs_its_hook_once():
    def build(mini):
        torch.manual_seed(0)
        model = h.CachedModel(
            {"default": _ReadByReference()}, h.loss_for("mnrl", torch.float64), mini
        )
        h.attach_trainer(model)
        return model

    plain, cached = build(None), build(MINI)
    batch = h.first_batch(plain, h.loader_for("mnrl", torch.float64))
    calls = []
    for model in (plain, cached):
        weight = model.model.encoders["default"].first.weight
        weight.register_hook(lambda grad: calls.append(1) or grad * 3)
    plain.zero_grad(set_to_none=True)
    plain.training_step(batch, 0).backward()
    _, got = h.cached_step(cached, batch)
    assert calls == [1, 1]
    h.assert_same_grads(got, h.grads_of(plain), 1e-10)


def _sharing_encoders(kind):
    """Two encoders (a dict, or two options of a SwitchEncoder) sharing one layer object."""
    first, second = h.DropoutEncoder("float64"), h.DropoutEncoder("float64", seed=4)
    if kind == "dict":
        second.first = first.first
        return {"default": first, "other": second}
    second.second = first.second
    return {"default": h.Switch({"pos": first, "neg": second})}


@pytest.mark.parametrize("kind", ["dict", "switch"])
def test_a_layer_shared_between_encoders(kind):
    # a module reached by two paths: torch's tied-weight untying left the alias in it (the
    # model lost its parameter, and the shared layer its gradient)
    def build(mini):
        torch.manual_seed(0)
        loss = h.loss_for("triplet_hard", torch.float64)
        model = h.CachedModel(_sharing_encoders(kind), loss, mini)
        h.attach_trainer(model)
        return model

    plain, cached = build(None), build(MINI)
    before = dict(cached.named_parameters())
    batch = h.first_batch(plain, h.loader_for("triplet_hard", torch.float64))
    plain.zero_grad(set_to_none=True)
    plain.training_step(batch, 0).backward()
    _, got = h.cached_step(cached, batch)
    after = dict(cached.named_parameters())
    assert after.keys() == before.keys()
    assert all(after[name] is parameter for name, parameter in before.items())
    h.assert_same_grads(got, h.grads_of(plain), 1e-10)
