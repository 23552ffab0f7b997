"""Train MobileNetV3 on CIFAR-100 with an online contrastive or triplet loss.

``python -m examples.cifar100.train_simple [--loss-fn contrastive|triplet] [--synthetic]``

DDP over two CPU processes (or GPUs): add ``--devices 2``; over several machines, also
``--num-nodes N`` (see the Scaling out guide).
"""

from typing import TYPE_CHECKING, List, Optional

from .cli import build_parser, run

if TYPE_CHECKING:
    import pytorch_lightning as pl

BATCH_SIZE = 128


def main(argv: Optional[List[str]] = None) -> "pl.Trainer":
    """Parse ``argv``, train for ``--epochs`` and return the trainer."""
    parser = build_parser("python -m examples.cifar100.train_simple", __doc__, epochs_default=30)
    parser.add_argument("--loss-fn", choices=("contrastive", "triplet"), default="contrastive")
    parser.add_argument("--mining", choices=("all", "hard"), default="hard")

    def make_model(args):
        from .models import SimpleModel as Model

        return Model(args.embedding_size, args.lr, args.loss_fn, args.mining, weights=args.weights)

    return run(parser, argv, BATCH_SIZE, make_model)


if __name__ == "__main__":
    main()
