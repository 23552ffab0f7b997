"""Data and model of the startup search example: records, their split, the trainable model."""

import json
import random
from typing import Dict, List, Sequence

import torch
from torch.utils.data import Dataset

from quaterion import TrainableModel
from quaterion.dataset import SimilarityGroupSample
from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.loss import SimilarityLoss, SoftmaxLoss
from quaterion.train.cache import CacheConfig, CacheType
from quaterion_models.encoders import Encoder
from quaterion_models.heads import EncoderHead, GatedHead, SkipConnectionHead

from .train import UPSTREAM_ENCODER

BATCH_SIZE = 64
#: Heads to choose from: ``"skip"`` (the default) can move each vector within its space, so
#: it separates the industries visibly; ``"gated"`` (upstream's choice) only re-weights the
#: encoder's dimensions and barely changes the ranking.
HEADS = ("skip", "gated")
#: ``(train, validation, test)`` shares of each industry's records.
SPLIT_SHARES = (3, 1, 1)


class DatasetError(ValueError):
    """A line of the dataset file is not a startup record."""


#: Fields every record needs (the training reads these two).
RECORD_FIELDS = ("description", "industry")


def read_records(path: str, max_samples: int = 500, seed: int = 42) -> List[dict]:
    """The first ``max_samples`` records of a jsonl file, shuffled with ``random.Random(seed)``.

    Raises:
        DatasetError: a line is not JSON, or not an object with str ``description`` and
            ``industry`` (the message names the line).
    """
    with open(path, encoding="utf-8") as file:
        lines = [
            (number, line) for number, line in zip(range(1, max_samples + 1), file) if line.strip()
        ]
    records = [_record(line, f"{path} line {number}") for number, line in lines]
    random.Random(seed).shuffle(records)
    return records


def _record(line: str, where: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{where} is not JSON ({err}); each line must be one record") from None
    if not isinstance(record, dict) or not all(
        isinstance(record.get(name), str) for name in RECORD_FIELDS
    ):
        raise DatasetError(
            f"{where}: expected an object with str fields {list(RECORD_FIELDS)}, got "
            f"{line.strip()[:80]!r}"
        )
    return record


def split_records(records: Sequence[dict]) -> Dict[str, List[dict]]:
    """Split each industry's records 3 : 1 : 1 into ``"train"``, ``"val"`` and ``"test"``.

    The k-th record of an industry (in the given order) goes to the split of ``k mod 5``, so
    every split holds every industry with at least five records, and the split does not
    depend on how the industries interleave.
    """
    cycle = [
        name for name, share in zip(("train", "val", "test"), SPLIT_SHARES) for _ in range(share)
    ]
    seen: Dict[str, int] = {}
    splits: Dict[str, List[dict]] = {"train": [], "val": [], "test": []}
    for record in records:
        k = seen.get(record["industry"], 0)
        seen[record["industry"]] = k + 1
        splits[cycle[k % len(cycle)]].append(record)
    return splits


class StartupsDataset(Dataset):
    """Records as ``SimilarityGroupSample(obj=record, group=industry index)``.

    Reads the first ``max_samples`` lines of ``path`` and shuffles them with
    ``random.Random(seed)``; or takes ``records`` as given. Industry indices follow
    ``sorted(set(industries))`` (or the ``industries`` passed), so they are the same in every
    process and across the splits of one dataset.
    """

    def __init__(
        self,
        path: str = "",
        max_samples: int = 500,
        seed: int = 42,
        records: Sequence[dict] = (),
        industries: Sequence[str] = (),
    ) -> None:
        self.data = list(records) if records else read_records(path, max_samples, seed)
        self.industries = list(industries) or sorted({r["industry"] for r in self.data})
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
    """Frozen ``TransformerEncoder`` (cached), a trainable head, ``SoftmaxLoss`` over industries.

    Args:
        pretrained_name: sentence-transformers model name or local directory.
        num_groups: number of industries.
        lr: Adam learning rate of the head and of the loss's class weights.
        head: one of :data:`HEADS`.
        dropout: dropout of the skip-connection head.
    """

    def __init__(
        self,
        pretrained_name: str = UPSTREAM_ENCODER,
        num_groups: int = 27,
        lr: float = 0.1,
        head: str = "skip",
        dropout: float = 0.1,
    ) -> None:
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self._pretrained_name = pretrained_name
        self._num_groups = num_groups
        self._lr = lr
        self._head = head
        self._dropout = dropout
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
        if self._head == "gated":
            return GatedHead(input_embedding_size)
        return SkipConnectionHead(input_embedding_size, dropout=self._dropout)

    def configure_loss(self) -> SimilarityLoss:
        return SoftmaxLoss(self.model.head.output_size, self._num_groups)

    def configure_metrics(self) -> AttachedMetric:
        return AttachedMetric(
            "rrp", RetrievalRPrecision(), prog_bar=True, on_epoch=True, on_step=False
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            [
                {"params": self.model.parameters(), "lr": self._lr},
                {"params": self.loss.parameters(), "lr": self._lr},
            ]
        )
