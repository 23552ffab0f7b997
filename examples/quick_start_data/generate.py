"""Generate the quick-start dataset: short texts about a topic, written in shared styles.

Each *group* is a topic (e.g. "rooftop solar panels"). Every text states its topic in one of
several shared *styles* (news headline, forum question, product review, tweet, ...). Styles are
long and share many words across topics, so an off-the-shelf sentence encoder partly groups
texts by style instead of by topic. Training a head to ignore style is a skill that transfers to
topics never seen in training, which is what the held-out test groups measure.

The topics are split by group into three disjoint sets: ``train.jsonl`` (fit the head),
``val.jsonl`` (early stopping) and ``test.jsonl`` (held-out groups, only used for evaluation).
Each line is ``{"text": str, "group": int, "topic": str, "style": str}``. The topics, their
phrasings and the style templates are data: ``vocabulary.json`` next to this script.

Run from the repository root to rewrite the shipped files::

    python -m examples.quick_start_data.generate [--out-dir DIR] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import os
import random
from typing import Dict, List, Tuple

from examples.console import plain_text
from examples.save_target import check_output_dir

VOCABULARY_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vocabulary.json")


def load_vocabulary(
    path: str = VOCABULARY_PATH,
) -> Tuple[Dict[str, List[str]], Dict[str, List[str]]]:
    """``(topics, styles)`` from ``vocabulary.json``: three phrasings per topic, so that texts
    of one group differ in content words too, and several templates per style, in which
    ``"{x}"`` is replaced by one phrasing of the topic."""
    with open(path, encoding="utf-8") as file:
        vocabulary = json.load(file)
    return vocabulary["topics"], vocabulary["styles"]


TOPICS, STYLES = load_vocabulary()

SPLITS = {"train": 36, "val": 8, "test": 16}  # number of topics (groups) per split
TEXTS_PER_STYLE = 2  # texts per (topic, style); 8 styles x 2 = 16 texts per group


def generate_records(seed: int = 7) -> Dict[str, List[dict]]:
    """Build the records of every split.

    Args:
        seed: seed of a private ``random.Random``; the same seed gives the same files.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``: lists of
        ``{"text", "group", "topic", "style"}`` dicts. Group ids are unique across splits.
    """
    rng = random.Random(seed)
    topics = list(TOPICS)
    rng.shuffle(topics)
    if sum(SPLITS.values()) != len(topics):
        raise ValueError(f"SPLITS need {sum(SPLITS.values())} topics, TOPICS has {len(topics)}")
    records: Dict[str, List[dict]] = {}
    start = 0
    for split, n_topics in SPLITS.items():
        rows = []
        for group in range(start, start + n_topics):
            topic = topics[group]
            for style, templates in STYLES.items():
                for template in rng.sample(templates, TEXTS_PER_STYLE):
                    phrase = rng.choice(TOPICS[topic])
                    rows.append(
                        {
                            "text": template.format(x=phrase),
                            "group": group,
                            "topic": topic,
                            "style": style,
                        }
                    )
        rng.shuffle(rows)
        records[split] = rows
        start += n_topics
    return records


def write_jsonl(path: str, rows: List[dict]) -> None:
    """Write ``rows`` as JSON lines to ``path`` atomically."""
    from quaterion_models.utils import atomic_write

    with atomic_write(path, "w") as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=plain_text(__doc__.splitlines()[0]))
    parser.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    check_output_dir(args.out_dir, "--out-dir")
    os.makedirs(args.out_dir, exist_ok=True)
    for split, rows in generate_records(args.seed).items():
        write_jsonl(os.path.join(args.out_dir, f"{split}.jsonl"), rows)
        print(f"{split}: {len(rows)} texts, {len({r['group'] for r in rows})} groups")


if __name__ == "__main__":
    main()
