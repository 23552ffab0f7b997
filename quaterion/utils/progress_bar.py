"""Rich progress bar for training and the cache fill ("Caching")."""

from typing import Any, Dict, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import RichProgressBarTheme
from rich.progress import ProgressColumn
from rich.text import Text
from typing_extensions import override


class FixedLengthProcessionSpeed(ProgressColumn):
    """Speed column ``f"{speed:.2f}it/s"`` left-padded to the widest value seen so far.

    Args:
        style: rich style of the text.
    """

    def __init__(self, style: Any):
        self.style = style
        self.max_length = 0
        super().__init__()

    def render(self, task: Any) -> Text:
        """Text of the current speed (``"0.00it/s"`` when unknown), padded to a fixed width."""
        speed = f"{task.speed:.2f}" if task.speed is not None else "0.00"
        text = f"{speed}it/s"
        self.max_length = max(self.max_length, len(text))
        return Text(text.rjust(self.max_length), style=self.style)


_THEME = RichProgressBarTheme(  # Quaterion's colours
    description="white",
    progress_bar="#4881AD",
    progress_bar_finished="#67C87A",
    progress_bar_pulse="#67C87A",
    batch_progress="white",
    time="grey54",
    processing_speed="grey70",
    metrics="white",
)


class QuaterionProgressBar(RichProgressBar):
    """``RichProgressBar`` with Quaterion's theme; the cache fill shows as "Caching".

    While predicting, a module with a ``progress_description`` attribute (the cache fill's
    ``CacheModel`` has ``"Caching"``) names the predict bar with it.

    Args:
        refresh_rate: refresh every ``refresh_rate`` batches (``0`` disables the bar).
        leave: keep finished bars on screen.
        theme: rich styles; ``None`` uses Quaterion's theme.
        console_kwargs: arguments for the rich ``Console``.
    """

    def __init__(
        self,
        refresh_rate: int = 1,
        leave: bool = False,
        theme: Optional[RichProgressBarTheme] = None,
        console_kwargs: Optional[Dict[str, Any]] = None,
    ):
        super().__init__(refresh_rate, leave, theme or _THEME, console_kwargs)

    @property
    @override
    def predict_description(self) -> str:
        module = self.trainer.lightning_module if self.trainer.predicting else None
        return getattr(module, "progress_description", None) or super().predict_description

    @override
    def configure_columns(self, trainer: "pl.Trainer") -> list:
        columns = super().configure_columns(trainer)
        columns[-1] = FixedLengthProcessionSpeed(style=self.theme.processing_speed)
        return columns
