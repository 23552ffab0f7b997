"""Every count, size, rate and seed option of the examples refuses bad values at parse time
(exit status 2, ``argument --name: ...``) instead of training nothing (``--epochs 0``),
training forever (``--epochs -1``) or failing deep inside a library."""

import pytest

from examples import mining_round, quick_start
from examples.cars import serving as cars_serving
from examples.cars import train as cars_train
from examples.cifar100 import train_simple, train_with_xbm
from examples.cli_types import MAX_SEED
from examples.startup_search import search as startup_search
from examples.startup_search import train as startup_train

PARSERS = {
    "quick_start": quick_start.parse_args,
    "mining_round": mining_round.parse_args,
    "cars.train": cars_train.parse_args,
    "cars.serving": lambda argv: cars_serving.build_parser().parse_args(argv),
    "cifar100": train_simple.main,  # parses first; a bad value never reaches the data
    "cifar100.xbm": train_with_xbm.main,
    "startup.train": lambda argv: startup_train.build_parser().parse_args(argv),
    "startup.search": lambda argv: startup_search.build_parser().parse_args(["q", *argv]),
}
POSITIVE_INTS = {
    "quick_start": ["--epochs", "--batch-size", "--limit", "--num-queries", "--top-k",
                    "--finetune-batch-size", "--finetune-mini-batch", "--finetune-epochs",
                    "--finetune-samples-per-group"],
    "mining_round": ["--epochs", "--batch-size", "--negatives"],
    "cars.train": ["--batch-size", "--epochs", "--views", "--input-size", "--devices",
                   "--num-nodes"],
    "cars.serving": ["--num-queries", "--top-k", "--input-size"],
    "cifar100": ["--embedding-size", "--epochs", "--synthetic-size", "--devices"],
    "cifar100.xbm": ["--xbm-buffer-size"],
    "startup.train": ["--epochs", "--max-samples"],
    "startup.search": ["--limit"],
}  # fmt: skip
POSITIVE_FLOATS = {
    "quick_start": ["--lr", "--finetune-lr"],
    "mining_round": ["--lr"],
    "cars.train": ["--lr"],
    "cifar100": ["--lr"],
    "startup.train": ["--lr"],
}
NON_NEGATIVE_INTS = {"mining_round": ["--range-min"], "cifar100.xbm": ["--xbm-start-iteration"]}
SEEDS = {name: ["--seed"] for name in ("quick_start", "mining_round", "cars.train", "cifar100",
                                       "startup.train")}  # fmt: skip


def _cases(table, values):
    return [
        (name, flag, value) for name, flags in table.items() for flag in flags for value in values
    ]


def _refused(capsys, script, flag, value) -> str:
    with pytest.raises(SystemExit) as info:
        PARSERS[script]([flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err, err
    return err


@pytest.mark.parametrize("script, flag, value", _cases(POSITIVE_INTS, ["0", "-3", "two", "1.5"]))
def test_counts_must_be_positive_integers(capsys, script, flag, value):
    err = _refused(capsys, script, flag, value)
    assert "positive integer" in err and value in err


@pytest.mark.parametrize(
    "script, flag, value", _cases(POSITIVE_FLOATS, ["0", "-0.001", "nan", "inf", "fast"])
)
def test_learning_rates_must_be_finite_and_positive(capsys, script, flag, value):
    assert "number > 0" in _refused(capsys, script, flag, value)


@pytest.mark.parametrize("script, flag, value", _cases(NON_NEGATIVE_INTS, ["-1", "x"]))
def test_non_negative_options(capsys, script, flag, value):
    assert "integer >= 0" in _refused(capsys, script, flag, value)


@pytest.mark.parametrize("script, flag, value", _cases(SEEDS, ["-1", str(MAX_SEED + 1), "s"]))
def test_seeds_stay_in_the_range_seed_everything_accepts(capsys, script, flag, value):
    assert f"[0, {MAX_SEED}]" in _refused(capsys, script, flag, value)


def test_good_values_parse_to_numbers():
    args = cars_train.parse_args(["--epochs", "3", "--lr", "1e-4", "--seed", str(MAX_SEED)])
    assert (args.epochs, args.lr, args.seed) == (3, 1e-4, MAX_SEED)
    args = mining_round.parse_args(["--range-min", "0", "--seed", "0"])
    assert (args.range_min, args.seed) == (0, 0)
