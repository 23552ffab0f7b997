"""``GatherPlan``: the expected layout follows the agreed sequence; capacities shrink only
after many small calls (one process, no collectives)."""

import torch

from quaterion._gather_plan import AgreedLayout, GatherPlan


def test_plan_follows_the_agreed_sequence():
    plan = GatherPlan()
    first, second = AgreedLayout(1, 16, 4), AgreedLayout(2, 8, 4)
    assert plan.expected() is None
    plan.learn(first)
    assert plan.expected() == first  # a new layout is expected to repeat
    plan.learn(second)
    assert plan.expected() == second
    plan.learn(first)  # learned: after "second" comes "first"
    assert plan.expected() == second
    plan.confirm(second, 4)
    assert plan.expected() == first
    plan.forget()
    assert plan.expected() is None and plan.transitions() == ()


def test_capacity_shrinks_after_many_small_calls_only():
    plan = GatherPlan()
    large = AgreedLayout(1, 16, 64)
    plan.learn(large)  # expected to repeat, with capacity 64
    for _ in range(7):
        plan.confirm(plan.expected(), 16)  # a quarter of the capacity
    plan.confirm(plan.expected(), 17)  # one larger call resets the count
    for _ in range(7):
        plan.confirm(plan.expected(), 16)
    assert plan.expected() == large
    plan.confirm(plan.expected(), 16)  # the 8th small call in a row
    assert plan.expected() == AgreedLayout(1, 16, 16)


def test_after_an_unpredicted_call_the_follower_is_learned_apart_from_the_start():
    plan = GatherPlan()
    loss = AgreedLayout(1, 16, 4)
    plan.learn(loss)
    plan.learn(None)  # e.g. a gather too large to guess
    assert plan.expected() is None
    plan.learn(loss)  # learned: the loss's gather follows the unpredicted call
    plan.learn(None)  # the loss's successor is now "unpredicted"
    assert plan.expected() == loss
    plan.forget()  # the start state is not the unpredicted one
    assert plan.expected() is None


def test_a_shrunk_capacity_keeps_the_rest_of_the_layout():
    plan = GatherPlan()
    specs = ((torch.float32, (3,), True), (torch.int64, (), False))
    layout = AgreedLayout(7, 20, 64, "cuda", specs)
    plan.learn(layout)
    for _ in range(8):
        plan.confirm(plan.expected(), 2)
    assert plan.expected() == AgreedLayout(7, 20, 2, "cuda", specs)
