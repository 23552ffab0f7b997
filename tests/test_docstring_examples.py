"""Every ``>>>`` example in the docstrings of both packages runs and prints what it shows."""

import doctest
import importlib
import pkgutil

import pytest

import quaterion
import quaterion_models


def _modules():
    for package in (quaterion, quaterion_models):
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            yield info.name


def _examples():
    finder = doctest.DocTestFinder(exclude_empty=True)
    for name in _modules():
        # every extra is installed for the tests: a module that fails to import fails here
        module = importlib.import_module(name)
        for test in finder.find(module, name):
            if test.examples:
                yield pytest.param(test, id=test.name)


EXAMPLES = list(_examples())


def test_examples_were_found():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("test", EXAMPLES)
def test_docstring_example(test):
    runner = doctest.DocTestRunner(
        verbose=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    runner.run(test, out=lambda text: pytest.fail(text, pytrace=False))
    assert runner.failures == 0
