"""examples.mining_round: mining with the round-1 model helps more than training as long again."""

import pytest

from examples.mining_round import parse_args, run


@pytest.mark.slow
def test_mined_round_beats_round_one_and_the_equal_length_control(capsys):
    results = run(parse_args(["--epochs", "2"]))
    printed = capsys.readouterr().out
    for key in ("round_1", "round_2", "control"):
        assert 0.0 <= results[key] <= 1.0
        assert f"{results[key]:.4f}" in printed  # the printed numbers are the returned ones
    assert results["round_2"] > results["round_1"] + 0.05
    assert results["round_2"] > results["control"] + 0.02


def test_a_data_dir_without_the_splits_exits_with_the_flag(tmp_path):
    with pytest.raises(SystemExit) as info:
        run(parse_args(["--data-dir", str(tmp_path)]))
    assert str(info.value).startswith("error: Quick-start data file not found: ")
    assert "--data-dir" in str(info.value)
