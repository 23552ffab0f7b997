"""Train MobileNetV3 on CIFAR-100 with semi-hard triplets and cross-batch memory (XBM).

``python -m examples.cifar100.train_with_xbm [--xbm-start-iteration 1000] [--synthetic]``

Batch size and buffer size are chosen so that training fits on a 4 GB GPU; ``--devices 2``
and ``--num-nodes N`` train with DDP (see the Scaling out guide).
"""

from typing import TYPE_CHECKING, List, Optional

from examples.cli_types import non_negative_int, positive_int
from .cli import build_parser, run

if TYPE_CHECKING:
    import pytorch_lightning as pl

BATCH_SIZE = 64


def main(argv: Optional[List[str]] = None) -> "pl.Trainer":
    """Parse ``argv``, train for ``--epochs`` and return the trainer."""
    parser = build_parser("python -m examples.cifar100.train_with_xbm", __doc__, epochs_default=30)
    parser.add_argument(
        "--xbm-start-iteration",
        type=non_negative_int,
        default=1000,
        help="XBM adds its memory loss once the global step exceeds this (default 1000)",
    )
    parser.add_argument(
        "--xbm-buffer-size", type=positive_int, default=2048, help="rows kept in the XBM memory"
    )

    def make_model(args):
        from quaterion.train.xbm import XbmConfig

        from .models import XbmModel as Model

        xbm = XbmConfig(buffer_size=args.xbm_buffer_size, start_iteration=args.xbm_start_iteration)
        return Model(args.embedding_size, args.lr, xbm, weights=args.weights)

    return run(parser, argv, BATCH_SIZE, make_model)


if __name__ == "__main__":
    main()
