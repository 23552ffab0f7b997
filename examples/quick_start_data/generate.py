"""Generate the quick-start dataset: short texts about a topic, written in shared styles.

Each *group* is a topic (e.g. "rooftop solar panels"). Every text states its topic in one of
several shared *styles* (news headline, forum question, product review, tweet, ...). Styles are
long and share many words across topics, so an off-the-shelf sentence encoder partly groups
texts by style instead of by topic. Training a head to ignore style is a skill that transfers to
topics never seen in training, which is what the held-out test groups measure.

The topics are split by group into three disjoint sets: ``train.jsonl`` (fit the head),
``val.jsonl`` (early stopping) and ``test.jsonl`` (held-out groups, only used for evaluation).
Each line is ``{"text": str, "group": int, "topic": str, "style": str}``.

Run from the repository root to rewrite the shipped files::

    python -m examples.quick_start_data.generate [--out-dir DIR] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from typing import Dict, List, Sequence

# Three phrasings per topic, so that texts of one group differ in content words too.
TOPICS: Dict[str, Sequence[str]] = {
    "rooftop solar panels": (
        "rooftop solar panels",
        "photovoltaic cells on the roof",
        "solar power for houses",
    ),
    "sourdough bread": (
        "sourdough bread",
        "a wild yeast starter for baking",
        "crusty homemade loaves",
    ),
    "marathon training": (
        "marathon training",
        "running 42 kilometres",
        "long distance running plans",
    ),
    "electric cars": ("electric cars", "battery powered vehicles", "charging an EV at home"),
    "beekeeping": ("beekeeping", "honey bee hives", "harvesting honey from a colony"),
    "chess openings": ("chess openings", "the Sicilian defence", "first moves on the chessboard"),
    "houseplants": ("houseplants", "watering indoor plants", "a monstera and a fiddle leaf fig"),
    "cryptocurrency": ("cryptocurrency", "bitcoin prices", "blockchain tokens and wallets"),
    "volcano eruptions": ("volcano eruptions", "lava flows and ash clouds", "an active volcano"),
    "dental care": ("dental care", "brushing and flossing teeth", "a visit to the dentist"),
    "jazz music": ("jazz music", "saxophone improvisation", "a late night jazz club"),
    "public libraries": (
        "public libraries",
        "borrowing books for free",
        "the local library branch",
    ),
    "knitting": ("knitting", "wool yarn and needles", "a hand knitted sweater"),
    "space telescopes": (
        "space telescopes",
        "images of distant galaxies",
        "an observatory in orbit",
    ),
    "coffee brewing": ("coffee brewing", "espresso and pour over", "freshly ground coffee beans"),
    "wildfires": (
        "wildfires",
        "forest fires spreading in dry weather",
        "firefighters battling a blaze",
    ),
    "video game consoles": (
        "video game consoles",
        "a new gaming console",
        "playing games on the TV",
    ),
    "recycling": ("recycling", "sorting plastic and glass waste", "the recycling bins"),
    "dog training": ("dog training", "teaching a puppy to sit", "obedience classes for dogs"),
    "mortgage rates": ("mortgage rates", "home loan interest", "borrowing money to buy a house"),
    "vaccines": ("vaccines", "immunisation shots", "a flu jab at the clinic"),
    "surfing": ("surfing", "catching waves on a board", "the surf at the beach"),
    "tax returns": ("tax returns", "filing income taxes", "deductions on the tax form"),
    "ancient Rome": ("ancient Rome", "Roman emperors and legions", "the ruins of the Colosseum"),
    "smartphone batteries": (
        "smartphone batteries",
        "phone battery life",
        "a phone that dies by noon",
    ),
    "vegetable gardening": (
        "vegetable gardening",
        "growing tomatoes and carrots",
        "a backyard veggie patch",
    ),
    "earthquakes": ("earthquakes", "seismic tremors", "buildings shaking during a quake"),
    "remote work": ("remote work", "working from home", "video calls instead of the office"),
    "bird watching": ("bird watching", "spotting rare birds with binoculars", "a bird hide"),
    "opera": ("opera", "a soprano aria", "the opera house performance"),
    "high speed trains": (
        "high speed trains",
        "bullet trains between cities",
        "rail travel at 300 km/h",
    ),
    "yoga": ("yoga", "stretching on a yoga mat", "sun salutations and breathing"),
    "cybersecurity": (
        "cybersecurity",
        "hackers and data breaches",
        "strong passwords and firewalls",
    ),
    "climate summits": (
        "climate summits",
        "world leaders negotiating emission cuts",
        "a global climate agreement",
    ),
    "wedding planning": ("wedding planning", "choosing a wedding venue", "the bride and groom"),
    "cheese making": ("cheese making", "aging cheddar and brie", "curds and whey"),
    "mountain climbing": (
        "mountain climbing",
        "reaching the summit",
        "ropes, crampons and ice axes",
    ),
    "influenza": ("influenza", "the flu season", "fever and a sore throat"),
    "robot vacuum cleaners": (
        "robot vacuum cleaners",
        "a cleaning robot for floors",
        "an automatic vacuum",
    ),
    "olive oil": ("olive oil", "cold pressed extra virgin oil", "olive groves and presses"),
    "traffic jams": ("traffic jams", "rush hour congestion", "cars stuck on the motorway"),
    "piano lessons": (
        "piano lessons",
        "learning to play the piano",
        "practising scales on the keys",
    ),
    "deep sea creatures": (
        "deep sea creatures",
        "anglerfish in the ocean depths",
        "animals living on the sea floor",
    ),
    "airline delays": ("airline delays", "cancelled flights", "waiting at the airport gate"),
    "skin care": ("skin care", "moisturiser and sunscreen", "a routine for clear skin"),
    "photography": ("photography", "shooting with a DSLR camera", "portrait lighting and lenses"),
    "elections": ("elections", "voters at the polling station", "ballots and candidates"),
    "tea ceremonies": ("tea ceremonies", "matcha whisked in a bowl", "serving green tea"),
    "cycling commutes": ("cycling commutes", "riding a bike to work", "bicycle lanes in the city"),
    "sleep": ("sleep", "getting eight hours of rest", "insomnia and bedtime habits"),
    "pizza": ("pizza", "a margherita from a wood fired oven", "mozzarella and tomato sauce"),
    "artificial intelligence": (
        "artificial intelligence",
        "machine learning models",
        "neural networks that learn",
    ),
    "hurricanes": ("hurricanes", "a tropical storm making landfall", "strong winds and flooding"),
    "football transfers": (
        "football transfers",
        "a striker signing for a new club",
        "the transfer window",
    ),
    "camping": ("camping", "pitching a tent in the woods", "a campfire under the stars"),
    "minimalism": ("minimalism", "owning fewer things", "decluttering the home"),
    "3D printing": ("3D printing", "printing plastic parts layer by layer", "a filament printer"),
    "vinyl records": ("vinyl records", "a turntable and LPs", "collecting old albums on vinyl"),
    "scuba diving": ("scuba diving", "breathing underwater with a tank", "exploring coral reefs"),
    "student loans": ("student loans", "paying for university", "college debt repayments"),
}

# Several templates per style; "{x}" is replaced by one phrasing of the topic.
STYLES: Dict[str, Sequence[str]] = {
    "headline": (
        "BREAKING NEWS: officials confirm major developments regarding {x}, full report tonight",
        "Exclusive report: experts warn the public about the latest news on {x} this week",
        "Headline of the day: city council announces a surprising decision on {x}",
    ),
    "question": (
        "Hey everyone, does anybody here know a lot about {x}? I really need some advice, thanks!",
        "Quick question for the forum: what do you all think about {x}? Any tips appreciated.",
        "Can someone please explain {x} to me like I am five? I am so confused right now.",
    ),
    "review": (
        "Five stars out of five. I tried {x} last month and it exceeded all my expectations.",
        "Honest review: {x} was overpriced and disappointing, two stars, would not recommend.",
        "Customer review: my whole family loved {x}, great value for money, will buy again.",
    ),
    "tweet": (
        "omg cannot stop thinking about {x} lol #mood #weekend #blessed",
        "ok hot take: {x} is totally overrated, fight me in the replies #unpopularopinion",
        "just spent the whole day on {x} and honestly no regrets #lifestyle #vibes",
    ),
    "legal": (
        "Pursuant to section 4(b) of the agreement, all matters concerning {x} shall be reviewed.",
        "The undersigned parties hereby agree that liability arising from {x} is excluded.",
        "Notice: the committee shall adjudicate any dispute in relation to {x} within 30 days.",
    ),
    "story": (
        "Once upon a time, in a little village far away, everyone was talking about {x}.",
        "The old grandmother smiled and began her bedtime tale, a story about {x}.",
        "Long ago a brave young girl set off on a magical adventure to learn about {x}.",
    ),
    "job ad": (
        "We are hiring! Join our friendly team working on {x}. Competitive salary, flexible hours.",
        "Job opening: senior specialist in {x}, full time position, apply with your CV today.",
        "Career opportunity: a fast growing startup seeks interns passionate about {x}.",
    ),
    "lecture": (
        "Welcome to today's lecture. In this course module we will study {x} in great detail.",
        "Lesson plan for students, week three: an introduction to {x}, with homework exercises.",
        "In this academic seminar, professors will present their research findings on {x}.",
    ),
}

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
                for template in rng.sample(list(templates), TEXTS_PER_STYLE):
                    phrase = rng.choice(list(TOPICS[topic]))
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
    """Write ``rows`` as JSON lines to ``path`` atomically (temp file, then ``os.replace``)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    for split, rows in generate_records(args.seed).items():
        write_jsonl(os.path.join(args.out_dir, f"{split}.jsonl"), rows)
        print(f"{split}: {len(rows)} texts, {len({r['group'] for r in rows})} groups")


if __name__ == "__main__":
    main()
