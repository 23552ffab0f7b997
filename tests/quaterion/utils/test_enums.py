from quaterion.utils.enums import TrainStage


def test_train_stage_formats_as_value():
    assert f"{TrainStage.TRAIN}_loss" == "train_loss"
    assert f"{TrainStage.VALIDATION}" == "validation"
    assert str(TrainStage.TEST) == "test"
    assert TrainStage.TRAIN == "train"
    assert TrainStage("validation") is TrainStage.VALIDATION
    assert {"train": 1}[TrainStage.TRAIN] == 1
