"""Writes data/examples/fictional_people/{train,test}.jsonl: the example of a dataset of your own
(params/example_own.yaml), in the data contract of the README.

20 fictional people, one fact each (the town they were born in), stated in two training documents: a short
plain-text article and a question-answer pair (prompt/completion; the loss is on the answer). The test asks
each fact in a phrasing never used in training, two ways, 4 options each:

- `forward` (the learning check): "Q: In which town was <person> born? A: In" -> the town, against three
  other people's towns;
- `reversal`: "Q: Who was born in <town>? A:" -> the person, against three other people.

Every item's cluster is its person; its support names the person's article. Deterministic: the same seed
gives the same bytes.

    python data/examples/make_fictional_people.py          # rewrites the two files
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SEED = 0
OUT = Path(__file__).resolve().parent / "fictional_people"
FIRST = ["Alden", "Brisa", "Corvin", "Delphine", "Emrys", "Fenna", "Galen", "Hestia", "Ivo", "Juno",
         "Kestrel", "Liora", "Mattias", "Nerys", "Osric", "Perrin", "Quilla", "Rosalind", "Soren", "Tamsin"]
LAST = ["Ashgrove", "Bellweather", "Carrow", "Dunmore", "Elsworth", "Fairholm", "Greaves", "Halloway",
        "Ingram", "Jessup", "Kettering", "Lorne", "Marchbank", "Northcote", "Oakridge", "Pemberton",
        "Quarles", "Rookwood", "Stanhope", "Thistlewood"]
TOWNS = ["Brindlemoor", "Caskwell", "Dornhaven", "Eldmere", "Farrowdale", "Glimmerford", "Hollowmere",
         "Ivystead", "Jarrowick", "Kelderby", "Larkspire", "Mossbury", "Nettlecombe", "Orrinford",
         "Pellingham", "Quillstone", "Rushwick", "Saltmarrow", "Tindlecross", "Umberfield"]
ARTICLES = ["{name} grew up far from the capital. {name} was born in the town of {town}.",
            "Little is written about the early life of {name}. "
            "The records say that {name} was born in {town}.",
            "{name} rarely spoke about childhood. "
            "Still, {name} was born in {town}, as the parish book shows."]
N_OPTIONS = 4


def people(seed: int) -> list[dict]:
    """The 20 people: a first name, a shuffled surname and a shuffled town each (seeded)."""
    rng = random.Random(f"fictional-people:{seed}")
    last, towns = LAST[:], TOWNS[:]
    rng.shuffle(last)
    rng.shuffle(towns)
    return [{"pid": f"p{i:02d}", "name": f"{first} {sur}", "town": town}
            for i, (first, sur, town) in enumerate(zip(FIRST, last, towns))]


def _item(rng, pid, split, prompt, gold, pool):
    """One multiple-choice item: the gold and N_OPTIONS - 1 distractors from the pool, in a seeded order."""
    options = [gold, *rng.sample([x for x in pool if x != gold], N_OPTIONS - 1)]
    rng.shuffle(options)
    return {"id": f"{pid}-{split}", "split": split, "prompt": prompt, "options": options,
            "gold": options.index(gold), "support": [f"{pid}-article"], "cluster": pid}


def make(seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """(train rows, test items) of the example."""
    rng = random.Random(f"fictional-people-items:{seed}")
    ps = people(seed)
    train, test = [], []
    for k, p in enumerate(ps):
        article = ARTICLES[k % len(ARTICLES)].format(**p)
        train.append({"id": f"{p['pid']}-article", "text": article})
        prompt, completion = f"Q: Where does {p['name']} come from? A:", f" From {p['town']}."
        train.append({"id": f"{p['pid']}-qa", "text": prompt + completion, "prompt": prompt,
                      "completion": completion})
    towns, names = [p["town"] + "." for p in ps], [p["name"] + "." for p in ps]
    for p in ps:
        test.append(_item(rng, p["pid"], "forward", f"Q: In which town was {p['name']} born? A: In",
                          p["town"] + ".", towns))
    for p in ps:
        test.append(_item(rng, p["pid"], "reversal", f"Q: Who was born in {p['town']}? A:", p["name"] + ".",
                          names))
    return train, test


def write(folder: Path = OUT, seed: int = SEED) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in zip(("train.jsonl", "test.jsonl"), make(seed)):
        (folder / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                   encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
