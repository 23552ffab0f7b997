"""Quiet, informative console output for the example scripts.

The examples print their own one-line progress for each slow phase (:func:`phase`) and keep
Quaterion's progress bars, while the stack's banners stay off:

* :func:`quiet_libraries` lowers Lightning's loggers to warnings (the "GPU available",
  "TPU available", "💡 Tip" and "fit stopped" lines are info messages), hides the weight
  loading/saving bars of ``transformers`` and ignores the warnings listed in
  :data:`HARMLESS_WARNINGS`, each checked to say nothing about an example run;
* :func:`quiet_trainer_options` turns off the model summary, logs to CSV files (or not at
  all) instead of Lightning's default logger (which asks for TensorBoard), and swaps the progress bar for :func:`progress_bar`,
  which shows no ``v_num`` and whose epoch line fits 80 columns.

Only the examples call these; the library itself changes no global logging or warning state.
This module imports nothing heavy at import time, so ``--help`` stays fast.
"""

import contextlib
import logging
import re
import sys
import time
import warnings
from typing import Any, Dict, Iterator, Optional, TextIO

#: ``(message regex, why it is harmless in the examples)``.
HARMLESS_WARNINGS = (
    (r".*does not have many workers.*", "the examples keep num_workers=0 to run anywhere"),
    (r".*module\(s\) in eval mode.*", "the frozen encoders stay in eval mode on purpose"),
    (r".*but have no logger configured.*", "metrics go to the progress bar; no logger is set"),
    (
        r".*isinstance\(treespec, LeafSpec\).*",
        "a torch deprecation inside Lightning's own pytree helper, not in our code",
    ),
)

#: Loggers of the training stack whose info messages are banners, not results.
QUIET_LOGGERS = ("pytorch_lightning", "lightning", "lightning_fabric", "lightning.pytorch")


def quiet_libraries() -> None:
    """Silence the banners, tips and harmless warnings of the stack for this process."""
    # Importing Lightning sets its loggers to INFO: import it first, then lower them.
    import pytorch_lightning  # noqa: F401

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern, _reason in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    # "Loading weights: 103/103" and "Writing model shards" bars on every load and save.
    transformers_logging.disable_progress_bar()


def plain_text(text: str) -> str:
    """Docstring text for ``--help``: RST roles and double backquotes become plain words."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def say(message: str, file: Optional[TextIO] = None) -> None:
    """Print one progress line to ``file`` (default: stdout) immediately."""
    print(message, file=file or sys.stdout, flush=True)


@contextlib.contextmanager
def phase(description: str, file: Optional[TextIO] = None) -> Iterator[None]:
    """Print ``description ...`` now and ``description: done in X s`` when the block ends."""
    say(f"{description} ...", file)
    started = time.perf_counter()
    yield
    say(f"{description}: done in {time.perf_counter() - started:.1f} s", file)


def progress_bar() -> Any:
    """Quaterion's progress bar without ``v_num`` and with a compact epoch line.

    The bar is 20 columns wide and the time and speed columns are left out, so that
    ``Epoch 3/9 ━━━ 9/9 rrp_validation: 0.907 rrp_train: 0.996`` stays on one 80-column line.
    """
    from quaterion.utils.progress_bar import QuaterionProgressBar

    class ExampleProgressBar(QuaterionProgressBar):
        """Description, a 20-column bar and the batch count; metrics without ``v_num``."""

        def configure_columns(self, trainer: Any) -> list:
            description, bar, batches = super().configure_columns(trainer)[:3]
            bar.bar_width = 20
            return [description, bar, batches]

        def get_metrics(self, trainer: Any, pl_module: Any) -> Dict[str, Any]:
            metrics = super().get_metrics(trainer, pl_module)
            metrics.pop("v_num", None)
            return metrics

    return ExampleProgressBar(console_kwargs={"tab_size": 4})


def quiet_trainer_options(options: Dict[str, Any], csv_logs: bool = True) -> Dict[str, Any]:
    """``pl.Trainer`` keyword arguments without the model summary and with the compact bar.

    Args:
        options: e.g. ``Quaterion.trainer_defaults(...)``; other callbacks (early stopping,
            checkpoints) are kept.
        csv_logs: log metrics (and keep checkpoints) in ``./lightning_logs/version_N/``
            through a ``CSVLogger``, as upstream's default logger did; ``False`` logs nothing.

    Returns:
        a new dict.
    """
    from pytorch_lightning.callbacks import ModelSummary, ProgressBar
    from pytorch_lightning.loggers import CSVLogger

    callbacks = [
        callback
        for callback in options.get("callbacks", [])
        if not isinstance(callback, (ModelSummary, ProgressBar))
    ]
    return {
        **options,
        "callbacks": callbacks + [progress_bar()],
        "enable_model_summary": False,
        "logger": CSVLogger(save_dir=options.get("default_root_dir") or ".") if csv_logs else False,
    }
