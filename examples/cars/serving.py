"""Prepare vectors for a similar-car search demo: ``python -m examples.cars.serving``.

Writes to ``--save-dir``: ``labels.jsonl`` (one ``{"label": int}`` per test image),
``imgs/<i>.jpg``, ``original.npy`` (backbone embeddings) and ``tuned.npy`` (tuned model);
row ``i`` of both arrays is line ``i`` of ``labels.jsonl`` and ``imgs/<i>.jpg``.
"""

import argparse
import json
import os
import sys
from typing import Dict, List, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from quaterion_models import SimilarityModel
from quaterion_models.heads import EmptyHead

from ._io import atomic_write
from .cli import CPU_WARNING, PACKAGE_DIR, add_data_args, resolve_common_defaults
from .config import SPLIT_CACHE_PATH
from .data import DataNotFoundError, get_dataloaders, get_raw_dataset
from .evaluate import load_tuned_model

ENCODE_BATCH_SIZE = 32


def save_images(dataset: Dataset, save_dir: str) -> int:
    """Write ``labels.jsonl`` and ``imgs/<index>.jpg`` for every ``(PIL image, label)`` item."""
    images_dir = os.path.join(save_dir, "imgs")
    os.makedirs(images_dir, exist_ok=True)
    lines = []
    for index in range(len(dataset)):
        image, label = dataset[index]
        lines.append(json.dumps({"label": int(label)}))
        atomic_write(
            os.path.join(images_dir, f"{index}.jpg"),
            lambda tmp, image=image: image.convert("RGB").save(tmp, format="JPEG"),
        )

    def write_labels(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as file:
            file.write("".join(line + "\n" for line in lines))

    atomic_write(os.path.join(save_dir, "labels.jsonl"), write_labels)
    return len(lines)


def encode_loader(model: SimilarityModel, dataloader, device: str) -> np.ndarray:
    """Encode a raw (not set-up) similarity loader batch by batch: each batch is the
    pre-collate triple ``(ids, images, labels)``. Returns float32 ``(N, D)``."""
    model = model.to(device).eval()
    chunks = [
        model.encode(images, batch_size=ENCODE_BATCH_SIZE, to_numpy=True)
        for _ids, images, _labels in dataloader
    ]
    return np.concatenate(chunks, axis=0)


def save_embeddings(array: np.ndarray, path: str) -> None:
    """``np.save`` (no pickle) through an atomic write."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as file:
            np.save(file, array, allow_pickle=False)

    atomic_write(path, write)


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m examples.cars.serving``."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.cars.serving", description=__doc__, epilog=CPU_WARNING
    )
    parser.add_argument("--tuned-model", default=os.path.join(PACKAGE_DIR, "cars_encoders"))
    parser.add_argument("--save-dir", default=os.path.join(PACKAGE_DIR, "cars_embeddings"))
    add_data_args(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
    """Write images, labels and both embedding arrays; returns ``{"original", "tuned"}`` arrays.

    The original vectors come from the tuned model's own frozen backbone with an
    ``EmptyHead``: it is the same network as the base model, pretrained or not.
    """
    args = resolve_common_defaults(build_parser().parse_args(argv))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data_kwargs = dict(data_dir=args.data_dir, synthetic=args.synthetic, seed=args.seed)
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
    except (DataNotFoundError, FileNotFoundError) as exc:
        sys.exit(f"error: {exc}")
    os.makedirs(args.save_dir, exist_ok=True)
    count = save_images(raw_test, args.save_dir)

    size = SimilarityModel.get_encoders_output_size(tuned.encoders)
    original_model = SimilarityModel(encoders=tuned.encoders, head=EmptyHead(size))
    original = encode_loader(original_model, test_loader, device)
    save_embeddings(original, os.path.join(args.save_dir, "original.npy"))
    tuned_vectors = encode_loader(tuned, test_loader, device)
    save_embeddings(tuned_vectors, os.path.join(args.save_dir, "tuned.npy"))
    print(f"Wrote {count} images, labels.jsonl, original.npy and tuned.npy to {args.save_dir}")
    return {"original": original, "tuned": tuned_vectors}


if __name__ == "__main__":
    main()
