"""Rich progress bar for training and the cache fill ("Caching")."""

from typing import Any, Dict, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import (
    BatchesProcessedColumn,
    CustomBarColumn,
    CustomTimeColumn,
    RichProgressBarTheme,
)
from rich.progress import ProgressColumn, TextColumn
from rich.table import Column
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


def _default_theme() -> RichProgressBarTheme:
    return RichProgressBarTheme(
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

    A predicted module with a ``progress_description`` attribute (the cache fill's
    ``CacheModel`` has ``"Caching"``) names its predict bar with it.

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
        super().__init__(
            refresh_rate=refresh_rate,
            leave=leave,
            theme=theme if theme is not None else _default_theme(),
            console_kwargs=console_kwargs,
        )
        self._description: Optional[str] = None

    @property
    @override
    def predict_description(self) -> str:
        return self._description or super().predict_description

    @override
    def configure_columns(self, trainer: "pl.Trainer") -> list:
        return [
            TextColumn(
                "[progress.description]{task.description}",
                table_column=Column(no_wrap=True, min_width=9),
            ),
            CustomBarColumn(
                complete_style=self.theme.progress_bar,
                finished_style=self.theme.progress_bar_finished,
                pulse_style=self.theme.progress_bar_pulse,
            ),
            BatchesProcessedColumn(style=self.theme.batch_progress),
            CustomTimeColumn(style=self.theme.time),
            FixedLengthProcessionSpeed(style=self.theme.processing_speed),
        ]

    @override
    def on_predict_batch_start(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._description = getattr(pl_module, "progress_description", None)
        super().on_predict_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)

    @override
    def on_predict_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        super().on_predict_end(trainer, pl_module)
        self._description = None
