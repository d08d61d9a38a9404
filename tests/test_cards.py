"""Dataset cards: Hugging Face format on a smoke dataset, readable by `datasets.load_dataset`."""
from __future__ import annotations

import pytest
import yaml

from lib import cards, datasets, params as P, runs


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(runs, "RUNS", tmp_path_factory.mktemp("runs"))
    params = P.load("smoke")
    out = datasets.build(params, "syllogisms")
    yield out, *datasets.load(params, "syllogisms")
    mp.undo()


def test_card_header_and_body(folder):
    out, train, test, manifest = folder
    baselines = [{"baseline": "first option", "split": "syllogism", "acc": 0.25}]
    text = cards.write_card(out, manifest, train, test, baselines=baselines).read_text()
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["license"] == "mit" and "multiple-choice" in header["task_categories"]
    assert header["size_categories"] == ["n<1K"]
    assert [(c["config_name"], c["data_files"]) for c in header["configs"]] == [
        ("test", [{"split": "test", "path": "test.jsonl"}]), ("train", [{"split": "train", "path": "train.jsonl"}])]
    for split, row in zip(dict.fromkeys(it["split"] for it in test), cards.split_table(test)):
        xs = [it for it in test if it["split"] == split]
        assert row["items"] == len(xs)
        chance = sum(len(it.get("golds") or [it["gold"]]) / len(it["options"]) for it in xs) / len(xs)
        assert row["chance"] == pytest.approx(chance)
        assert f"| {split} | {len(xs)} |" in text
    assert "| first option | syllogism | 0.250 |" in text
    assert f"seed {manifest['seed']}" in text and manifest["generator"] in text
    assert "| prompt | str | text the options continue (after a space) |" in text


def test_chance_counts_every_gold():
    test = [{"id": "a", "split": "s", "prompt": "p", "options": ["x", "y", "z", "w"], "gold": 0, "golds": [0, 2]},
            {"id": "b", "split": "s", "prompt": "p", "options": ["x", "y"], "gold": 1}]
    assert cards.split_table(test) == [{"split": "s", "items": 2, "options": "2-4", "chance": (0.5 + 0.5) / 2}]
    assert cards.size_category(999) == "n<1K" and cards.size_category(1000) == "1K<n<10K"


def test_card_loads_with_datasets(folder, tmp_path):
    out, train, test, manifest = folder
    cards.write_card(out, manifest, train, test)
    from datasets import load_dataset

    items, docs = load_dataset(str(out), cache_dir=str(tmp_path)), load_dataset(str(out), "train", cache_dir=str(tmp_path))
    assert items["test"].num_rows == len(test) and docs["train"].num_rows == len(train)
    assert items["test"][0]["prompt"] == test[0]["prompt"] and docs["train"][0]["text"] == train[0]["text"]
