"""Compare the base and the tuned cars models by R-precision on the unseen test classes.

``python -m examples.cars.evaluate [--model both|base|tuned] [--tuned-model DIR] [--synthetic]``
prints one dict per model and writes a bar chart of the values to ``--plot``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Dict, List, Optional

from .cli import CPU_WARNING, PACKAGE_DIR, add_data_args, add_model_args, resolve_common_defaults
from .config import DEFAULT_ARCH, SPLIT_CACHE_PATH
from examples.console import plain_text, quiet_libraries, say
from examples.weights import resolve_weights

if TYPE_CHECKING:  # imported in the functions, so that --help stays fast
    import torch
    from torch.utils.data import Dataset

    from quaterion_models import SimilarityModel

BATCH_SIZE = 32
METRIC_BATCH = 1024
SAMPLE_SIZE = 1000


def _evaluate(model: SimilarityModel, dataset: Dataset, device: str) -> Dict[str, torch.Tensor]:
    from quaterion import Quaterion
    from quaterion.eval.evaluator import Evaluator
    from quaterion.eval.group import RetrievalRPrecision
    from quaterion.eval.samplers.group_sampler import GroupSampler

    evaluator = Evaluator(
        metrics=RetrievalRPrecision(),
        sampler=GroupSampler(sample_size=SAMPLE_SIZE, device=device, log_progress=True),
    )
    return Quaterion.evaluate(evaluator=evaluator, dataset=dataset, model=model.to(device))


def load_tuned_model(tuned_model_dir: str) -> SimilarityModel:
    """``SimilarityModel.load`` with an error that says how to produce the directory."""
    from quaterion_models import SimilarityModel

    if not os.path.isfile(os.path.join(tuned_model_dir, "config.json")):
        raise FileNotFoundError(
            f"no tuned model at {tuned_model_dir!r}: run `python -m examples.cars.train "
            "--save-dir DIR` first (add --synthetic offline) and pass --tuned-model DIR"
        )
    return SimilarityModel.load(tuned_model_dir)


def build_base_model(
    arch: str = DEFAULT_ARCH, weights: str = "pretrained", tuned_model_dir: Optional[str] = None
) -> SimilarityModel:
    """The backbone's own embeddings (``EmptyHead``).

    With pretrained weights this is a fresh ImageNet backbone, as upstream. When the
    backbone is random (``--weights random`` or no checkpoint available) a fresh one would
    be a different network from the tuned model's, so the tuned model's own frozen backbone
    is used when ``tuned_model_dir`` holds one.
    """
    from quaterion_models import SimilarityModel
    from quaterion_models.heads import EmptyHead

    from quaterion_models.encoders.extras.torchvision_encoder import TorchvisionEncoder

    resolved = resolve_weights(arch, weights)
    if resolved is None and tuned_model_dir and os.path.isdir(tuned_model_dir):
        encoders = load_tuned_model(tuned_model_dir).encoders
        print("Base model: the tuned model's frozen backbone without its head.", file=sys.stderr)
    else:
        encoders = {"default": TorchvisionEncoder(arch, weights=resolved)}
    size = SimilarityModel.get_encoders_output_size(encoders)
    return SimilarityModel(encoders=encoders, head=EmptyHead(size))


def eval_base_encoder(
    dataset: Dataset,
    device: str,
    arch: str = DEFAULT_ARCH,
    weights: str = "pretrained",
    tuned_model_dir: Optional[str] = None,
) -> Dict[str, torch.Tensor]:
    """R-precision of :func:`build_base_model` on ``dataset``; prints and returns the dict."""
    say(f"Evaluating the base model on {len(dataset)} test images ...")
    result = _evaluate(build_base_model(arch, weights, tuned_model_dir), dataset, device)
    print("base model:", {name: float(value) for name, value in result.items()}, flush=True)
    return result


def eval_tuned_encoder(
    dataset: Dataset, device: str, tuned_model_dir: str
) -> Dict[str, torch.Tensor]:
    """R-precision of the servable in ``tuned_model_dir``; prints and returns the dict."""
    say(f"Evaluating the tuned model {tuned_model_dir} on {len(dataset)} test images ...")
    result = _evaluate(load_tuned_model(tuned_model_dir), dataset, device)
    print("tuned model:", {name: float(value) for name, value in result.items()}, flush=True)
    return result


def plot_results(results: Dict[str, Dict[str, torch.Tensor]], path: str) -> None:
    """Bar chart (PNG) of ``RetrievalRPrecision`` per evaluated model, written atomically."""
    from quaterion_models.utils import atomic_write
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(results)
    values = [float(results[name]["RetrievalRPrecision"]) for name in names]
    figure = Figure(figsize=(4, 3.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = {"base": "#9aa5b1", "tuned": "#4881AD"}
    bars = axes.bar(names, values, color=[colours.get(name, "#67C87A") for name in names])
    axes.bar_label(bars, fmt="%.3f")
    axes.set_ylim(0, 1.1)
    axes.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.set_ylabel("R-precision (test classes)")
    axes.set_title("Cars: base vs tuned")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path) as file:
        figure.savefig(file, format="png")


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m examples.cars.evaluate``."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.cars.evaluate", description=plain_text(__doc__), epilog=CPU_WARNING
    )
    parser.add_argument("--model", choices=("both", "base", "tuned"), default="both")
    parser.add_argument(
        "--tuned-model",
        default=os.path.join(PACKAGE_DIR, "cars_encoders"),
        help="servable written by examples.cars.train (default: the training default)",
    )
    parser.add_argument(
        "--plot",
        default=os.path.join(PACKAGE_DIR, "cars_evaluation.png"),
        help="bar chart PNG of the results ('' to skip)",
    )
    add_data_args(parser)
    add_model_args(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, torch.Tensor]]:
    """Evaluate the chosen models; returns ``{"base": {...}, "tuned": {...}}`` (those run)."""
    parser = build_parser()
    args = resolve_common_defaults(parser.parse_args(argv))
    if args.plot and os.path.isdir(args.plot):
        parser.error(
            f"--plot {args.plot} is a directory; pass a file name, e.g. "
            f"{os.path.join(args.plot, 'cars_evaluation.png')}"
        )
    say("Loading torch, Lightning and torchvision ...")
    import pytorch_lightning as pl
    import torch

    from quaterion_models.utils import DamagedFileError, UnsafeFileError

    from .data import DataNotFoundError, get_datasets

    quiet_libraries()
    pl.seed_everything(args.seed, verbose=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        _, test_dataset = get_datasets(
            input_size=args.input_size,
            split_cache_path=SPLIT_CACHE_PATH,
            data_dir=args.data_dir,
            synthetic=args.synthetic,
            seed=args.seed,
        )
        results = {}
        if args.model in ("both", "base"):
            results["base"] = eval_base_encoder(
                test_dataset, device, args.arch, args.weights, args.tuned_model
            )
        if args.model in ("both", "tuned"):
            results["tuned"] = eval_tuned_encoder(test_dataset, device, args.tuned_model)
    except (DataNotFoundError, FileNotFoundError, DamagedFileError, UnsafeFileError) as exc:
        sys.exit(f"error: {exc}")
    if args.plot:
        plot_results(results, args.plot)
        print(f"Bar chart written to {args.plot}")
    return results


if __name__ == "__main__":
    main()
