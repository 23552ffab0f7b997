"""Train MobileNetV3 on CIFAR-100 with pytorch-metric-learning's ArcFace loss and miner.

``python -m examples.cifar100.train_with_pytorch_metric_learning [--epochs 10] [--synthetic]``

Any pytorch-metric-learning loss (and miner) plugs in through ``PytorchMetricLearningWrapper``.
``--devices 2`` trains with DDP over two processes, ``--num-nodes N`` over N machines.
"""

import sys
from typing import TYPE_CHECKING, List, Optional

from .cli import build_parser, run

if TYPE_CHECKING:
    import pytorch_lightning as pl

BATCH_SIZE = 128


def main(argv: Optional[List[str]] = None) -> "pl.Trainer":
    """Parse ``argv``, train for ``--epochs`` (default 10) and return the trainer."""
    parser = build_parser(
        "python -m examples.cifar100.train_with_pytorch_metric_learning", __doc__, epochs_default=10
    )
    args_checked = parser.parse_args(argv)  # --help and bad options exit here, before imports
    del args_checked
    try:
        import pytorch_metric_learning  # noqa: F401
    except ImportError:
        print(
            "This example needs pytorch-metric-learning: pip install pytorch-metric-learning",
            file=sys.stderr,
        )
        sys.exit(1)

    def make_model(args):
        from .models import PmlModel as Model

        return Model(args.embedding_size, args.lr, args.weights)

    return run(parser, argv, BATCH_SIZE, make_model)


if __name__ == "__main__":
    main()
