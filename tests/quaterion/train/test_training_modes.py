"""The modes a fit trains in: trainable parts in train mode, frozen encoders in eval mode,
whatever modes the model was left in before the fit (``encode`` leaves eval mode)."""

import torch

from tests.quaterion.train.helpers import CountingEncoder, Model, fit_data, fit_losses


class ModeRecordingEncoder(CountingEncoder):
    """Records ``self.training`` at every call."""

    def __init__(self, trainable: bool, seed: int):
        super().__init__(trainable=trainable, seed=seed)
        self.modes = []

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return super().forward(batch)


class ModeRecordingModel(Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.step_modes = []

    def training_step(self, batch, batch_idx, **kwargs):
        head = self.model.head
        self.step_modes.append((self.training, head.training))
        return super().training_step(batch, batch_idx, **kwargs)


def _model():
    encoders = {
        "tuned": ModeRecordingEncoder(trainable=True, seed=0),
        "frozen": ModeRecordingEncoder(trainable=False, seed=1),
    }
    return ModeRecordingModel(encoders=encoders), encoders


def test_a_model_left_in_eval_mode_trains_its_trainable_parts_in_train_mode():
    model, encoders = _model()
    (train, _), loaders = fit_data(n=16)
    model.model.encode([train.samples[0].obj])  # leaves the whole model in eval mode
    assert not model.model.training
    encoders["frozen"].modes.clear()
    encoders["tuned"].modes.clear()

    fit_losses(model, loaders[0], None, max_epochs=2)
    steps = len(model.step_modes)
    assert steps > 0 and model.step_modes == [(True, True)] * steps
    assert encoders["tuned"].modes == [True] * steps  # dropout / batch norm would train
    assert encoders["frozen"].modes == [False] * steps  # equal to what a cache would hold


def test_validation_runs_in_eval_mode_and_training_resumes_in_train_mode():
    model, encoders = _model()
    fit_losses(model, *fit_data(n=16)[1], max_epochs=2)
    tuned = encoders["tuned"].modes
    assert True in tuned and False in tuned  # training and validation calls
    assert model.step_modes == [(True, True)] * len(model.step_modes)  # after validations too
    assert encoders["frozen"].modes == [False] * len(encoders["frozen"].modes)


def test_the_loss_and_other_modules_of_the_trainable_model_train_in_train_mode():
    """As Lightning 1 (and the original) did for the whole LightningModule: a loss with
    modules of its own (e.g. dropout) trains in train mode even when the trainable model
    was left in eval mode."""
    from quaterion.loss import TripletLoss

    class RecordingLoss(TripletLoss):
        def __init__(self):
            super().__init__(mining="all")
            self.dropout = torch.nn.Dropout(0.0)
            self.modes = []

        def forward(self, embeddings, groups):
            self.modes.append((self.training, self.dropout.training))
            return super().forward(embeddings=embeddings, groups=groups)

    loss = RecordingLoss()
    model = Model(encoders={"frozen": ModeRecordingEncoder(False, 1)}, loss=loss)
    model.eval()  # e.g. left so by the caller
    fit_losses(model, fit_data(n=16)[1][0], None, max_epochs=1)
    assert len(loss.modes) > 0 and loss.modes == [(True, True)] * len(loss.modes)
    assert not model.model.encoders["frozen"].training
