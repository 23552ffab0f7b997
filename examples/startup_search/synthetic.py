"""Templated startup records (``name``, ``description``, ``industry``); no real data is used.

The same generator writes the shipped sample (``make_sample_dataset.py``) and serves
``--synthetic``. Each industry has its own vocabulary, and all industries share the sentence
templates and some generic words, so the industry is learnable from the text but not given
away by a single fixed phrase.
"""

import random
from typing import Dict, List

INDUSTRIES: Dict[str, Dict[str, List[str]]] = {
    "Fintech": {
        "stems": ["Pay", "Coin", "Ledger", "Fin", "Cred", "Vault"],
        "products": [
            "a mobile banking app",
            "an instant payments API",
            "a credit scoring engine",
            "a micro-lending platform",
            "an expense management card",
            "a robo-advisor",
        ],
        "customers": [
            "small businesses",
            "freelancers",
            "unbanked families",
            "retail investors",
            "online merchants",
            "credit unions",
        ],
        "goals": [
            "send money abroad cheaply",
            "get fair loans",
            "reconcile invoices automatically",
            "invest their savings",
            "detect fraudulent transactions",
            "manage cash flow",
        ],
    },
    "Healthcare": {
        "stems": ["Medi", "Cura", "Vita", "Pulse", "Heal", "Clinic"],
        "products": [
            "a telemedicine platform",
            "a wearable heart monitor",
            "an AI radiology assistant",
            "a patient scheduling system",
            "a remote care dashboard",
            "a diagnostic test kit",
        ],
        "customers": [
            "hospitals",
            "general practitioners",
            "elderly patients",
            "rural clinics",
            "pharmacies",
            "care homes",
        ],
        "goals": [
            "diagnose diseases earlier",
            "reduce waiting times",
            "monitor chronic conditions",
            "share medical records securely",
            "improve patient outcomes",
            "book appointments",
        ],
    },
    "Education": {
        "stems": ["Learn", "Edu", "Tutor", "Class", "Skill", "Campus"],
        "products": [
            "an adaptive learning app",
            "a virtual classroom",
            "a coding bootcamp platform",
            "a language tutoring marketplace",
            "a homework helper",
            "an exam preparation tool",
        ],
        "customers": [
            "students",
            "teachers",
            "universities",
            "adult learners",
            "schools",
            "corporate trainers",
        ],
        "goals": [
            "learn at their own pace",
            "track student progress",
            "prepare for exams",
            "teach online courses",
            "master new languages",
            "close skill gaps",
        ],
    },
    "Agriculture": {
        "stems": ["Agri", "Farm", "Crop", "Harvest", "Soil", "Grow"],
        "products": [
            "a soil sensor network",
            "a crop monitoring drone",
            "a precision irrigation system",
            "a farm management app",
            "a vertical farming kit",
            "a livestock tracking collar",
        ],
        "customers": [
            "farmers",
            "cooperatives",
            "greenhouse growers",
            "agronomists",
            "food producers",
            "vineyards",
        ],
        "goals": [
            "increase crop yields",
            "save irrigation water",
            "predict harvest dates",
            "detect plant diseases",
            "reduce fertiliser use",
            "sell produce directly",
        ],
    },
    "Clean Energy": {
        "stems": ["Sol", "Volt", "Green", "Watt", "Eco", "Grid"],
        "products": [
            "a rooftop solar marketplace",
            "a home battery system",
            "a smart energy meter",
            "an EV charging network",
            "a wind forecasting model",
            "a heat pump installer app",
        ],
        "customers": [
            "homeowners",
            "utilities",
            "factories",
            "municipalities",
            "property managers",
            "fleet operators",
        ],
        "goals": [
            "cut their carbon footprint",
            "store renewable power",
            "lower electricity bills",
            "charge electric vehicles",
            "balance the power grid",
            "switch to green energy",
        ],
    },
    "E-commerce": {
        "stems": ["Shop", "Cart", "Buy", "Market", "Deal", "Store"],
        "products": [
            "an online storefront builder",
            "a product recommendation engine",
            "a same-day delivery marketplace",
            "a returns management tool",
            "a social shopping app",
            "a dynamic pricing service",
        ],
        "customers": [
            "online retailers",
            "independent brands",
            "shoppers",
            "marketplace sellers",
            "fashion labels",
            "grocery chains",
        ],
        "goals": [
            "sell products online",
            "increase conversion rates",
            "personalise recommendations",
            "handle returns easily",
            "launch a web shop",
            "compare prices",
        ],
    },
    "Cybersecurity": {
        "stems": ["Secure", "Shield", "Guard", "Crypt", "Trust", "Sentinel"],
        "products": [
            "a threat detection platform",
            "a password manager",
            "a zero-trust network gateway",
            "a phishing simulation service",
            "an endpoint protection agent",
            "a vulnerability scanner",
        ],
        "customers": [
            "IT teams",
            "banks",
            "government agencies",
            "software companies",
            "remote workers",
            "security analysts",
        ],
        "goals": [
            "stop ransomware attacks",
            "protect sensitive data",
            "detect intrusions in real time",
            "manage access rights",
            "pass compliance audits",
            "patch vulnerabilities",
        ],
    },
    "Logistics": {
        "stems": ["Cargo", "Route", "Freight", "Ship", "Fleet", "Depot"],
        "products": [
            "a route optimisation engine",
            "a freight booking platform",
            "a warehouse robot",
            "a shipment tracking API",
            "a last-mile delivery app",
            "a fleet telematics box",
        ],
        "customers": [
            "carriers",
            "warehouses",
            "shippers",
            "courier companies",
            "manufacturers",
            "port operators",
        ],
        "goals": [
            "deliver parcels faster",
            "track shipments end to end",
            "fill empty trucks",
            "automate warehouse picking",
            "cut fuel costs",
            "plan delivery routes",
        ],
    },
}

SUFFIXES = ["ly", "io", "ify", "Hub", "Labs", "AI", "Go", "Wise", "Base", "Flow"]
TEMPLATES = [
    "{name} builds {product} that helps {customers} {goal}.",
    "{name} offers {product} for {customers} who want to {goal}.",
    "With {product}, {name} lets {customers} {goal}.",
    "{name} is {product} designed to help {customers} {goal} at scale.",
    "Our mission at {name} is to help {customers} {goal} using {product}.",
    "{name} develops {product}; {customers} use it to {goal}.",
]


def generate_startups(num_records: int, seed: int = 0) -> List[dict]:
    """``num_records`` records cycling through :data:`INDUSTRIES`, reproducible from ``seed``.

    Returns:
        dicts with ``"name"``, ``"description"`` and ``"industry"`` (all ``str``).
    """
    if num_records < 0:
        raise ValueError(f"num_records must be >= 0, got {num_records}")
    rng = random.Random(seed)
    names = list(INDUSTRIES)
    records = []
    for i in range(num_records):
        industry = names[i % len(names)]
        vocab = INDUSTRIES[industry]
        name = rng.choice(vocab["stems"]) + rng.choice(SUFFIXES)
        description = rng.choice(TEMPLATES).format(
            name=name,
            product=rng.choice(vocab["products"]),
            customers=rng.choice(vocab["customers"]),
            goal=rng.choice(vocab["goals"]),
        )
        records.append({"name": name, "description": description, "industry": industry})
    return records
