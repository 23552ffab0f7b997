import json

import pytest

from quaterion.distances import (
    BaseDistance,
    Cosine,
    Distance,
    DotProduct,
    Euclidean,
    Manhattan,
)


@pytest.mark.parametrize(
    "name, cls",
    [
        ("cosine", Cosine),
        ("euclidean", Euclidean),
        ("manhattan", Manhattan),
        ("dot_product", DotProduct),
    ],
)
def test_get_by_name_accepts_member_and_string(name, cls):
    assert Distance.get_by_name(name) is cls
    assert Distance.get_by_name(Distance(name)) is cls
    assert issubclass(cls, BaseDistance)


@pytest.mark.parametrize("bad", ["foo", "Cosine", 3, None])
def test_get_by_name_unknown_lists_valid_names(bad):
    with pytest.raises(ValueError) as err:
        Distance.get_by_name(bad)
    message = str(err.value)
    assert repr(bad) in message
    for member in Distance:
        assert repr(member.value) in message


def test_formats_and_compares_as_value():
    assert f"{Distance.COSINE}" == "cosine"
    assert str(Distance.DOT_PRODUCT) == "dot_product"
    assert Distance.EUCLIDEAN == "euclidean"
    assert Distance("manhattan") is Distance.MANHATTAN
    assert json.dumps({"d": Distance.COSINE}) == '{"d": "cosine"}'
    assert [m.value for m in Distance] == ["euclidean", "cosine", "dot_product", "manhattan"]
