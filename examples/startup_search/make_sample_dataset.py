"""Write the shipped sample ``data/startups_sample.jsonl``: ``python -m examples.startup_search.make_sample_dataset``.

The records are generated from templates (see ``synthetic.py``); no real company data is used.
"""

import argparse
import json
import os
from typing import List, Optional

from examples.console import plain_text

from .synthetic import generate_startups

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
SAMPLE_PATH = os.path.join(PACKAGE_DIR, "data", "startups_sample.jsonl")
SAMPLE_SIZE = 400
SAMPLE_SEED = 2021


def write_jsonl(records: List[dict], path: str) -> None:
    """One JSON object per line, written to a temporary file and moved into place."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")
    os.replace(tmp, path)


def main(argv: Optional[List[str]] = None) -> str:
    """Generate ``--size`` records with ``--seed`` into ``--output``; returns the path."""
    parser = argparse.ArgumentParser(description=plain_text(__doc__))
    parser.add_argument("--output", default=SAMPLE_PATH)
    parser.add_argument("--size", type=int, default=SAMPLE_SIZE)
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED)
    args = parser.parse_args(argv)
    write_jsonl(generate_startups(args.size, args.seed), args.output)
    print(f"Wrote {args.size} records to {args.output}")
    return args.output


if __name__ == "__main__":
    main()
