"""Shared training entry for the examples: ``Quaterion.fit`` with the default trainer."""

import argparse
from typing import TYPE_CHECKING, Any, Dict

from examples.cli_types import positive_int
from examples.console import quiet_libraries, quiet_trainer_options

if TYPE_CHECKING:  # imported in the functions, so that --help stays fast
    import pytorch_lightning as pl

    from quaterion import TrainableModel


def add_scale_args(parser: argparse.ArgumentParser) -> None:
    """``--devices N`` and ``--num-nodes N`` (both default 1), handed to the trainer."""
    parser.add_argument(
        "--devices",
        type=positive_int,
        default=1,
        help="devices (GPUs, or CPU processes) per machine; more than one trains with DDP "
        "(default: 1)",
    )
    parser.add_argument(
        "--num-nodes",
        type=positive_int,
        default=1,
        help="machines taking part (launch the script on each with torchrun or srun; "
        "see the Scaling out guide; default: 1)",
    )


def trainer_options(
    model: "TrainableModel", train_dataloader, max_epochs: int, devices: int = 1, num_nodes: int = 1
) -> Dict[str, Any]:
    """``Quaterion.trainer_defaults`` with ``max_epochs``, ``devices`` and ``num_nodes`` set,
    made quiet by :func:`~examples.console.quiet_trainer_options` (no model summary, CSV logs
    in ``./lightning_logs``, no ``v_num``).

    More than one process in all selects ``strategy="ddp"``.
    """
    from quaterion import Quaterion

    options = quiet_trainer_options(Quaterion.trainer_defaults(model, train_dataloader))
    options.update(max_epochs=max_epochs, devices=devices, num_nodes=num_nodes)
    if devices * num_nodes > 1:
        options["strategy"] = "ddp"
    return options


def fit(
    model: "TrainableModel",
    train_dataloader,
    val_dataloader,
    max_epochs: int,
    devices: int = 1,
    num_nodes: int = 1,
) -> "pl.Trainer":
    """``Quaterion.fit`` with :func:`trainer_options` (the defaults, early stopping on).

    Lightning's banners and the harmless warnings of
    :data:`~examples.console.HARMLESS_WARNINGS` (e.g. the "few workers" hint: the examples
    keep ``num_workers=0`` so that they run the same everywhere) are silenced.
    """
    import pytorch_lightning as pl

    from quaterion import Quaterion

    quiet_libraries()
    trainer = pl.Trainer(**trainer_options(model, train_dataloader, max_epochs, devices, num_nodes))
    Quaterion.fit(
        trainable_model=model,
        trainer=trainer,
        train_dataloader=train_dataloader,
        val_dataloader=val_dataloader,
    )
    return trainer
