"""Search the shipped startups from the command line, through an embedded Qdrant index.

``python -m examples.startup_search.search "payments for small shops" [--industry Fintech]``

The model is the servable ``examples.startup_search.train`` saved (``--model``, default
``startups``); without one, the raw all-MiniLM-L6-v2 encoder (offline) is used. The first run
indexes the dataset (``--dataset``, default the shipped sample) into ``--index-dir``; later
runs reuse it. When the model changes (retrained, or trained after a raw-encoder run) the
index refuses it, and this command indexes the data again with the new model.
"""

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, List, Optional, TextIO, Tuple

from examples.cli_types import positive_int
from examples.console import phase, plain_text, quiet_libraries
from examples.save_target import check_output_dir

from .make_sample_dataset import SAMPLE_PATH

if TYPE_CHECKING:  # imported in the functions, so that --help stays fast
    from quaterion_models import SimilarityModel

#: Distance the index ranks with: the head is trained with SoftmaxLoss over dot products of
#: its outputs, and the raw encoder is a cosine model; cosine serves both.
DISTANCE = "cosine"


def load_model(path: Optional[str]) -> "SimilarityModel":
    """The servable at ``path`` (if it exists), else the raw offline MiniLM encoder."""
    return load_model_described(path)[0]


def load_model_described(path: Optional[str]) -> Tuple["SimilarityModel", str]:
    """:func:`load_model` and a line saying which model it is and where it came from."""
    from quaterion_models import SimilarityModel
    from quaterion_models.heads import EmptyHead

    if path and os.path.isfile(os.path.join(path, "config.json")):
        return SimilarityModel.load(path), f"Model: the trained servable {os.path.abspath(path)}"
    from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder

    from .train import default_encoder, use_offline_hub

    encoder_path = default_encoder()
    use_offline_hub(encoder_path)
    encoder = TransformerEncoder(encoder_path, text_field="description")
    model = SimilarityModel(encoders=encoder, head=EmptyHead(encoder.embedding_size))
    return model, (
        f"Model: the raw encoder {encoder_path}, not trained (no servable at {path!r}; "
        "train one with python -m examples.startup_search.train)"
    )


def read_startups(path: str) -> List[dict]:
    """Every record of a jsonl file with ``name``, ``description`` and ``industry``."""
    if not os.path.isfile(path):
        sys.exit(f"error: dataset file {path!r} not found; omit --dataset to use the shipped one")
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def open_index(
    model: "SimilarityModel",
    index_dir: str,
    dataset: str,
    reindex: bool,
    log: Optional[TextIO] = None,
):
    """Open the index at ``index_dir``, (re-)indexing ``dataset`` when it is new or stale.

    Progress lines go to ``log`` (default: stdout); the indexing bar shows only on a
    terminal (in a log file its final state would print twice).
    """
    from quaterion_models.index import ModelMismatchError, SimilarityIndex

    progress = sys.stderr.isatty()
    try:
        index = SimilarityIndex(
            model, path=index_dir, distance=DISTANCE, recreate=reindex, show_progress=progress
        )
    except ModelMismatchError as err:
        print(f"{err}\n-> indexing again with the current model", file=sys.stderr)
        index = SimilarityIndex(
            model, path=index_dir, distance=DISTANCE, recreate=True, show_progress=progress
        )
    if index.count() == 0:
        records = read_startups(dataset)
        with phase(f"Indexing {len(records)} startups into {index_dir}", file=log):
            index.add(
                [r["description"] for r in records],
                payloads=[{k: r[k] for k in ("name", "description", "industry")} for r in records],
                ids=list(range(len(records))),
            )
    return index


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m examples.startup_search.search``."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.startup_search.search", description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("query", nargs="+", help="what to look for, in plain words")
    parser.add_argument("--limit", "-k", type=positive_int, default=5, help="results per query")
    parser.add_argument("--industry", action="append", help="only this industry (repeatable)")
    parser.add_argument("--model", default="startups", help="servable directory")
    parser.add_argument("--index-dir", default="startups-index", help="embedded index directory")
    parser.add_argument("--dataset", default=SAMPLE_PATH, help="jsonl of startups to index")
    parser.add_argument("--reindex", action="store_true", help="index the dataset again")
    parser.add_argument("--json", action="store_true", help="print JSON lines, one per hit")
    return parser


def main(argv: Optional[List[str]] = None) -> List[List[dict]]:
    """Answer each query; prints the hits and returns them as dicts (id, score, payload)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_output_dir(args.index_dir, "--index-dir")
    # progress and the model line go to stderr with --json, so stdout stays JSON lines
    log = sys.stderr if args.json else sys.stdout
    with phase("Loading the model", file=log):
        quiet_libraries()
        from quaterion_models.utils import DamagedFileError, UnsafeFileError

        try:
            model, description = load_model_described(args.model)
        except (DamagedFileError, UnsafeFileError) as err:
            sys.exit(f"error: --model {args.model}: {err}")
    print(description, file=log, flush=True)
    filter = {"industry": args.industry} if args.industry else None
    with open_index(model, args.index_dir, args.dataset, args.reindex, log) as index:
        results = index.search(args.query, limit=args.limit, filter=filter)
    answers = []
    for query, hits in zip(args.query, results):
        rows = [{"id": hit.id, "score": hit.score, **hit.payload} for hit in hits]
        answers.append(rows)
        if args.json:
            for row in rows:
                print(json.dumps({"query": query, **row}))
            continue
        print(f"\n{query!r}:")
        for rank, row in enumerate(rows, start=1):
            print(f"  {rank}. {row['score']:.3f}  {row['name']} [{row['industry']}]: "
                  f"{row['description']}")  # fmt: skip
    return answers


if __name__ == "__main__":
    main()
