"""Search held-out cars with the tuned model: ``python -m examples.cars.serving``.

Writes to ``--save-dir``: ``labels.jsonl`` (one ``{"label": int}`` per test image),
``imgs/<i>.jpg``, ``original.npy`` (backbone embeddings) and ``tuned.npy`` (tuned model);
row ``i`` of both arrays is line ``i`` of ``labels.jsonl`` and ``imgs/<i>.jpg``. Then it
indexes the tuned vectors into an embedded Qdrant index (``--index-dir``, point id ``i``
with payload ``{"label", "image"}``), answers ``--num-queries`` query images from it and
draws ``contact_sheet.png``: each query, then its top ``--top-k`` hits framed green (same
car model) or red (another model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Dict, List, Optional

from examples.cli_types import positive_int
from .cli import CPU_WARNING_SERVING, PACKAGE_DIR, add_data_args, resolve_common_defaults
from .config import SPLIT_CACHE_PATH
from .evaluate import load_tuned_model
from examples.console import plain_text, quiet_libraries, say
from examples.save_target import check_output_dir

if TYPE_CHECKING:  # imported in the functions, so that --help stays fast
    import numpy as np
    from torch.utils.data import Dataset

    from quaterion_models import SimilarityModel

ENCODE_BATCH_SIZE = 32
#: The distance of the ``TripletLoss`` in ``examples/cars/models.py`` (its default, cosine):
#: the index ranks with the distance the head was trained for.
DISTANCE = "cosine"


def save_images(dataset: Dataset, save_dir: str) -> int:
    """Write ``labels.jsonl`` and ``imgs/<index>.jpg`` for every ``(PIL image, label)`` item."""
    from quaterion_models.utils import atomic_write

    images_dir = os.path.join(save_dir, "imgs")
    os.makedirs(images_dir, exist_ok=True)
    lines = []
    for index in range(len(dataset)):
        image, label = dataset[index]
        lines.append(json.dumps({"label": int(label)}))
        with atomic_write(os.path.join(images_dir, f"{index}.jpg")) as file:
            image.convert("RGB").save(file, format="JPEG")
    with atomic_write(os.path.join(save_dir, "labels.jsonl"), "w") as file:
        file.write("".join(line + "\n" for line in lines))
    return len(lines)


def encode_loader(model: SimilarityModel, dataloader, device: str) -> np.ndarray:
    """Encode a raw (not set-up) similarity loader batch by batch: each batch is the
    pre-collate triple ``(ids, images, labels)``. Returns float32 ``(N, D)``."""
    import numpy as np

    model = model.to(device).eval()
    chunks = [
        model.encode(images, batch_size=ENCODE_BATCH_SIZE, to_numpy=True)
        for _ids, images, _labels in dataloader
    ]
    return np.concatenate(chunks, axis=0)


def save_embeddings(array: np.ndarray, path: str) -> None:
    """``np.save`` (no pickle) through an atomic write."""
    import numpy as np

    from quaterion_models.utils import atomic_write

    with atomic_write(path) as file:
        np.save(file, array, allow_pickle=False)


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m examples.cars.serving``."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.cars.serving",
        description=plain_text(__doc__),
        epilog=CPU_WARNING_SERVING,
    )
    parser.add_argument("--tuned-model", default=os.path.join(PACKAGE_DIR, "cars_encoders"))
    parser.add_argument("--save-dir", default=os.path.join(PACKAGE_DIR, "cars_embeddings"))
    parser.add_argument(
        "--index-dir", default=None, help="embedded search index (default: <save-dir>/index)"
    )
    parser.add_argument(
        "--num-queries", type=positive_int, default=6, help="query images to answer"
    )
    parser.add_argument("--top-k", type=positive_int, default=5, help="hits shown per query")
    add_data_args(parser)
    return parser


def search_and_draw(
    tuned: SimilarityModel,
    tuned_vectors: np.ndarray,
    raw_test: Dataset,
    test: Dataset,
    args: argparse.Namespace,
) -> Dict[str, object]:
    """Index ``tuned_vectors`` (row ``i`` = test image ``i``), answer evenly spaced query images
    from the index and save the contact sheet; returns the hit ids and the sheet's path."""
    import numpy as np

    from quaterion_models.index import SimilarityIndex
    from quaterion_models.utils import atomic_write

    from .contact_sheet import contact_sheet

    n = len(tuned_vectors)
    labels = [int(raw_test[i][1]) for i in range(n)]
    index_dir = args.index_dir or os.path.join(args.save_dir, "index")
    query_rows = np.linspace(0, n - 1, num=min(args.num_queries, n), dtype=int).tolist()
    # the bar only on a terminal: in a log file its final state would print twice
    progress = sys.stderr.isatty()
    with SimilarityIndex(
        tuned, path=index_dir, distance=DISTANCE, recreate=True, show_progress=progress
    ) as index:
        index.add_vectors(
            tuned_vectors,
            payloads=[{"label": label, "image": f"imgs/{i}.jpg"} for i, label in enumerate(labels)],
            ids=list(range(n)),
        )
        # queries are images: the index encodes them with the servable it is bound to
        results = index.search([test[row].obj for row in query_rows], limit=args.top_k + 1)
    hits = [
        [hit for hit in found if hit.id != row][: args.top_k]
        for row, found in zip(query_rows, results)
    ]
    same = [
        [hit.payload["label"] == labels[row] for hit in row_hits]
        for row, row_hits in zip(query_rows, hits)
    ]
    sheet = contact_sheet(
        [raw_test[row][0] for row in query_rows],
        [[raw_test[hit.id][0] for hit in row_hits] for row_hits in hits],
        same,
    )
    sheet_path = os.path.join(args.save_dir, "contact_sheet.png")
    with atomic_write(sheet_path) as file:
        sheet.save(file, format="PNG")
    found = sum(map(sum, same))
    total = sum(map(len, same))
    print(
        f"Indexed {n} test images into {index_dir}; {len(query_rows)} queries, "
        f"{found}/{total} hits of the query's car model; contact sheet: {sheet_path}"
    )
    return {
        "query_rows": query_rows,
        "hit_ids": [[hit.id for hit in row_hits] for row_hits in hits],
        "same": same,
        "contact_sheet": sheet_path,
        "index_dir": index_dir,
    }


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    """Write images, labels and both embedding arrays, then search; returns the arrays
    (``"original"``, ``"tuned"``) and what :func:`search_and_draw` returns.

    The original vectors come from the tuned model's own frozen backbone with an
    ``EmptyHead``: it is the same network as the base model, pretrained or not.
    """
    parser = build_parser()
    args = resolve_common_defaults(parser.parse_args(argv))
    check_output_dir(args.index_dir, "--index-dir")
    say("Loading torch and torchvision ...")
    import torch

    from quaterion_models import SimilarityModel
    from quaterion_models.heads import EmptyHead

    from quaterion_models.utils import DamagedFileError, UnsafeFileError

    from .data import DataNotFoundError, get_dataloaders, get_datasets, get_raw_dataset

    quiet_libraries()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data_kwargs = dict(data_dir=args.data_dir, synthetic=args.synthetic, seed=args.seed)
    say(f"Loading the tuned model {args.tuned_model} and the test split ...")
    try:
        tuned = load_tuned_model(args.tuned_model)
        _, raw_test = get_raw_dataset(args.input_size, SPLIT_CACHE_PATH, **data_kwargs)
        _, test_loader = get_dataloaders(
            batch_size=ENCODE_BATCH_SIZE,
            input_size=args.input_size,
            shuffle=False,
            split_cache_path=SPLIT_CACHE_PATH,
            **data_kwargs,
        )
        _, test = get_datasets(args.input_size, split_cache_path=SPLIT_CACHE_PATH, **data_kwargs)
    except (DataNotFoundError, FileNotFoundError, DamagedFileError, UnsafeFileError) as exc:
        sys.exit(f"error: {exc}")
    if os.path.exists(args.save_dir) and not os.path.isdir(args.save_dir):
        sys.exit(f"error: --save-dir {args.save_dir} is a file; pass a directory path")
    try:
        os.makedirs(args.save_dir, exist_ok=True)
    except OSError as exc:  # a read-only parent, a file among the parents
        sys.exit(f"error: --save-dir {args.save_dir}: {exc.strerror}; pass a writable directory")
    say(f"Writing {len(raw_test)} test images to {args.save_dir}/imgs ...")
    count = save_images(raw_test, args.save_dir)

    size = SimilarityModel.get_encoders_output_size(tuned.encoders)
    original_model = SimilarityModel(encoders=tuned.encoders, head=EmptyHead(size))
    say("Encoding the test images with the backbone alone ...")
    original = encode_loader(original_model, test_loader, device)
    save_embeddings(original, os.path.join(args.save_dir, "original.npy"))
    say("Encoding the test images with the tuned model ...")
    tuned_vectors = encode_loader(tuned, test_loader, device)
    save_embeddings(tuned_vectors, os.path.join(args.save_dir, "tuned.npy"))
    print(f"Wrote {count} images, labels.jsonl, original.npy and tuned.npy to {args.save_dir}")
    say("Indexing the tuned vectors and answering the query images ...")
    searched = search_and_draw(tuned, tuned_vectors, raw_test, test, args)
    return {"original": original, "tuned": tuned_vectors, **searched}


if __name__ == "__main__":
    main()
