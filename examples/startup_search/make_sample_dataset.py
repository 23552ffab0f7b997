"""Write the shipped sample ``data/startups_sample.jsonl``: ``python -m examples.startup_search.make_sample_dataset``.

The records are generated from templates (see ``synthetic.py``); no real company data is used.
"""

import argparse
import json
import os
from typing import List, Optional

from examples.cli_types import non_negative_int, random_seed
from examples.console import plain_text

from .synthetic import generate_startups

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
SAMPLE_PATH = os.path.join(PACKAGE_DIR, "data", "startups_sample.jsonl")
SAMPLE_SIZE = 400
SAMPLE_SEED = 2021


def write_jsonl(records: List[dict], path: str) -> None:
    """One JSON object per line, written atomically (a temporary sibling, removed if the
    write fails, then moved into place)."""
    from quaterion_models.utils import atomic_write  # imports torch: after --help

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "w") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")


def main(argv: Optional[List[str]] = None) -> str:
    """Generate ``--size`` records with ``--seed`` into ``--output``; returns the path."""
    parser = argparse.ArgumentParser(description=plain_text(__doc__))
    parser.add_argument("--output", default=SAMPLE_PATH)
    parser.add_argument("--size", type=non_negative_int, default=SAMPLE_SIZE)
    parser.add_argument("--seed", type=random_seed, default=SAMPLE_SEED)
    args = parser.parse_args(argv)
    if os.path.isdir(args.output):
        parser.error(
            f"--output {args.output} is a directory; pass a file name, e.g. "
            f"{os.path.join(args.output, 'startups.jsonl')}"
        )
    write_jsonl(generate_startups(args.size, args.seed), args.output)
    print(f"Wrote {args.size} records to {args.output}")
    return args.output


if __name__ == "__main__":
    main()
