"""The data contract of lib.datasets and the three datasets of the paper's sections 2.1-2.3."""
import json
import re

import pytest
import yaml

from lib import datasets as D
from lib import params as P
from lib import runs

OURS = ("simple_reversals", "syllogisms", "reversal_curse")
NO_B = {"datasets.semantic_structure": None, "datasets.derivatoids": None}




def _bytes(path):
    return {f: (path / f).read_bytes() for f in ("train.jsonl", "test.jsonl")}


# ------------------------------------------------------------------------------------------ determinism
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, monkeypatch, smoke):
    got = {}
    for tag, p in (("a", smoke), ("b", smoke), ("seed1", P.load("smoke", {**NO_B, "seed": 1}))):
        monkeypatch.setattr(runs, "RUNS", tmp_path / tag)
        got[tag] = {n: _bytes(D.build(p, n)) for n in OURS}
    for n in OURS:
        assert got["a"][n] == got["b"][n], n
        assert got["a"][n]["test.jsonl"] != got["seed1"][n]["test.jsonl"], n
        assert got["a"][n]["train.jsonl"] != got["seed1"][n]["train.jsonl"], n


def test_cached_build_is_reused_and_params_change_rebuilds(tmp_runs, smoke):
    out = D.build(smoke, "syllogisms")
    stamp = runs.stamp_path(out)
    before = stamp.stat().st_mtime_ns
    assert D.build(smoke, "syllogisms") == out and stamp.stat().st_mtime_ns == before
    bigger = P.load("smoke", {**NO_B, "datasets.syllogisms": {"n_items": 9, "existential_import": True, "counterbalance": True}})
    _, test, m = D.load(bigger, "syllogisms")
    assert m["counts"]["syllogism"] == 9 and m["params"]["n_items"] == 9


# ------------------------------------------------------------------------------------ syllogism checker
def S(q, x, y):
    return (q, x, y)


def test_validity_checker_on_hand_written_syllogisms():
    barbara = [S("All", "M", "P"), S("All", "S", "M")]
    assert D.is_valid(barbara, S("All", "S", "P"))
    assert not D.is_valid(barbara, S("All", "P", "S"))
    assert not D.is_valid(barbara, S("No", "S", "P"))
    # undistributed middle: all P are M, all S are M  =/=>  all S are P
    undistributed = [S("All", "P", "M"), S("All", "S", "M")]
    assert not D.is_valid(undistributed, S("All", "S", "P"))
    assert not D.is_valid(undistributed, S("Some", "S", "P"))
    assert D.valid_conclusions(undistributed) == []
    # Celarent, Darii, Camestres
    assert D.is_valid([S("No", "M", "P"), S("All", "S", "M")], S("No", "S", "P"))
    assert D.is_valid([S("No", "M", "P"), S("All", "S", "M")], S("No", "P", "S"))
    assert D.is_valid([S("All", "M", "P"), S("Some", "S", "M")], S("Some", "S", "P"))
    assert D.is_valid([S("All", "P", "M"), S("No", "S", "M")], S("No", "S", "P"))
    # two particular premises: nothing follows
    assert D.valid_conclusions([S("Some", "M", "P"), S("Some", "S", "M")]) == []
    # Darapti needs existential import: with empty M, "Some S are P" fails
    darapti = [S("All", "M", "P"), S("All", "M", "S")]
    assert D.is_valid(darapti, S("Some", "S", "P"), existential_import=True)
    assert not D.is_valid(darapti, S("Some", "S", "P"), existential_import=False)
    # subalternation: Barbara also gives "Some S are P" (and its converse) with import only
    assert D.valid_conclusions(barbara, existential_import=True) == [0, 2, 3]
    assert D.valid_conclusions(barbara, existential_import=False) == [0]
    with pytest.raises(ValueError, match="bad statement"):
        D.is_valid([S("Most", "M", "P")], S("All", "S", "P"))


def test_forms_are_the_traditional_valid_moods():
    # The traditional valid moods whose conclusion is All/Some/No (the "Some ... are not" moods are not scored):
    # Barbara, Barbari AA1; Celarent EA1; Darii AI1; Cesare EA2; Camestres AE2; Darapti AA3; Disamis IA3;
    # Datisi AI3; Bramantip AA4; Camenes AE4; Dimaris IA4.
    forms = D.syllogistic_forms(existential_import=True)
    assert sorted(f["form"] for f in forms) == sorted(
        ["AA1", "EA1", "AI1", "EA2", "AE2", "AA3", "IA3", "AI3", "AA4", "AE4", "IA4"])
    gold = {f["form"]: f["golds"] for f in forms}
    # the gold is the set of strongest valid conclusions: AA4 (All P are M, All M are S) gives All P are S,
    # a Some / No conclusion both converses
    assert gold["AA1"] == [S("All", "S", "P")] and gold["AA4"] == [S("All", "P", "S")]
    assert sorted(gold["AE2"]) == sorted([S("No", "S", "P"), S("No", "P", "S")])
    assert sorted(gold["AI1"]) == sorted([S("Some", "S", "P"), S("Some", "P", "S")])
    without = {f["form"]: f["golds"] for f in D.syllogistic_forms(existential_import=False)}
    assert "AA3" not in without and without["AA4"] == [S("All", "P", "S")]
    for f in forms:
        assert set(f["golds"]) <= set(f["valid"]) and all(D.is_valid(f["premises"], v) for v in f["valid"])
        # every valid conclusion is entailed by one of the golds (they are the strongest)
        assert all(any(D.is_valid([g], v) for g in f["golds"]) for v in f["valid"])


# -------------------------------------------------------------------------------------------- contract
def _contract(train, test, manifest, name):
    for r in train:
        assert {"id", "text", "sentences", "facts"} <= set(r)
        assert " ".join(r["sentences"]) == r["text"]
    for x in test:
        assert {"id", "split", "subset", "prompt", "options", "gold", "support"} <= set(x)
        assert x["split"] in D.SPLITS[name]
        assert not x["prompt"].endswith(" ") and not any(o.startswith(" ") for o in x["options"])
    assert manifest["dataset"] == name and manifest["n_train"] == len(train)
    assert sum(manifest["counts"].values()) == len(test)
    assert set(manifest["sha256"]) == {"train.jsonl", "test.jsonl"}


def test_the_28_features_and_their_reversal_forms():
    assert len(D.FEATURES) == 28 and len({w for pair in D.FEATURES for w in pair}) == 56
    table = dict(D.FEATURES)
    assert table["more dangerous"] == "less dangerous" and table["brighter"] == "dimmer"
    assert table["heavier"] == "lighter" and table["older"] == "younger"
    assert not {lead_in for _, lead_in in D.TRAIN_PREFACES} & {lead_in for _, lead_in in D.TEST_PREFACES}


def test_simple_reversals(tmp_runs, smoke):
    p = P.load("smoke", {**NO_B, "datasets.simple_reversals": {"n_facts": 30, "articles_per_fact": 3,
                                                              "counterbalance": True}})
    train, test, m = D.load(p, "simple_reversals")
    _contract(train, test, m, "simple_reversals")
    assert len(train) == 90 and m["counts"] == {"forward": 30, "reversal": 30}
    assert m["chance"] == {"forward": 0.5, "reversal": 0.5} and m["n_options"]["reversal"] == [2, 2]
    assert len({x["feature"] for x in test}) == 28  # every feature used once 30 >= 28
    assert {x["subset"] for x in test} == {"first", "reverse"}
    assert all(x["cluster"] == x["support"][0] for x in test)
    n_rev = sum(x["subset"] == "reverse" for x in test if x["split"] == "forward")
    assert 10 <= n_rev <= 20  # counterbalanced: about half the facts trained in the reverse form
    reverse_of = dict(D.FEATURES) | {b: a for a, b in D.FEATURES}
    texts = [r["text"] for r in train]
    nouns = set()
    for x in test:
        subj = x["prompt"].split()[-2]
        gold, wrong = x["options"][x["gold"]], x["options"][1 - x["gold"]]
        m_gold = re.fullmatch(r"(.+) than (\w+)\.", gold)
        rel, obj = m_gold.groups()
        nouns |= {subj, obj}
        if x["split"] == "forward":  # the trained fact itself, after a preface never seen in training
            trained = x["feature"] if x["subset"] == "first" else reverse_of[x["feature"]]
            assert rel == trained and sum(f"{subj} are {gold}" in t for t in texts) == 3
            assert wrong == f"{reverse_of[rel]} than {obj}."
        else:  # B are <reverse> than A; the contradiction repeats the trained relation word
            trained = x["feature"] if x["subset"] == "first" else reverse_of[x["feature"]]
            assert rel == reverse_of[trained] and wrong == f"{trained} than {obj}."
            assert any(f"{obj} are {trained} than {subj}." in t for t in texts)
            assert not any(re.search(rf"\b{subj} are\b", t) for t in texts)  # never trained in this direction
    assert len(nouns) == 60  # distinct nouns for every fact
    golds = [x["gold"] for x in test]
    assert 0 < sum(golds) < len(golds)  # gold position varies


def test_syllogisms(tmp_runs):
    p = P.load("smoke", {**NO_B, "datasets.syllogisms": {"n_items": 22, "existential_import": True,
                                                         "counterbalance": True}})
    train, test, m = D.load(p, "syllogisms")
    _contract(train, test, m, "syllogisms")
    premise = [x for x in test if x["split"] == "premise"]
    test = [x for x in test if x["split"] == "syllogism"]
    assert len(train) == len(test) == 22 and m["counts"] == {"premise": len(premise), "syllogism": 22}
    # the learning check: a trained premise, as trained (or its converse, when Some / No), balanced 2 : 1 : 1
    q_prem = [x["subset"] for x in premise]
    n = q_prem.count("Some")
    assert n > 0 and {q: q_prem.count(q) for q in ("All", "Some", "No")} == {"All": 2 * n, "Some": n, "No": n}
    by_fact = {f: r for r in train for f in r["facts"]}
    for x in premise:
        (fact,) = x["support"]
        trained = by_fact[fact]["sentences"][1 if fact.endswith("major") else 2]
        golds = {x["options"][g] for g in x["golds"]}
        q, a, b = re.fullmatch(r"(All|Some|No) (\w+) are (\w+)\.", trained).groups()
        assert golds == ({trained} if q == "All" else {trained, f"{q} {b} are {a}."}) and x["subset"] == q
        assert x["cluster"] == fact.split("-")[0] and len(x["options"]) == 6
    quant = [x["options"][x["gold"]].split()[0] for x in test]
    assert {q: quant.count(q) for q in ("All", "Some", "No")} == {"All": 11, "Some": 6, "No": 5}  # 2 : 1 : 1
    assert m["chance"]["syllogism"] == pytest.approx((11 / 6 + 11 * 2 / 6) / 22)
    assert set(x["subset"] for x in test) >= {"AA1", "AA4"}
    by_id = {r["id"]: r for r in train}
    for x in test:
        doc = by_id[x["id"]]
        assert doc["text"].startswith("The relationships between ") and len(doc["sentences"]) == 3
        a, b = re.fullmatch(r"The relationships between (\w+) and (\w+) are:", x["prompt"]).groups()
        names = re.fullmatch(r"The relationships between (\w+), (\w+) and (\w+) are:", doc["sentences"][0]).groups()
        assert {a, b} < set(names)
        mid = (set(names) - {a, b}).pop()
        # re-derive validity from the text alone, with the checker, terms renamed
        term = {a: "X", b: "Y", mid: "M"}
        prem = [(q, term[s], term[t]) for q, s, t in (re.fullmatch(r"(All|Some|No) (\w+) are (\w+)\.", s).groups()
                                                      for s in doc["sentences"][1:])]
        prem = [tuple({"X": "S", "Y": "P"}.get(v, v) for v in st) for st in prem]
        assert x["valid"] == D.valid_conclusions(prem, order=("S", "P"))
        assert x["options"][0] == f"All {a} are {b}." and len(set(x["options"])) == 6
        assert x["gold"] in x["valid"] and set(x["golds"]) <= set(x["valid"])
        assert x["golds"] == D.strongest_conclusions(prem, order=("S", "P"))


@pytest.mark.parametrize("pool", ["targets", "p2d"])
def test_reversal_curse(tmp_runs, pool):
    p = P.load("smoke", {**NO_B, "datasets.reversal_curse": {"people_per_group": 5, "distractor_pool": pool,
                                                             "n_distractors": 3, "both_pools": True,
                                                             "examples_per_person": None,
                                                             "templates_per_person": 10}})
    train, test, m = D.load(p, "reversal_curse")
    other = "reversal_p2d" if pool == "targets" else "reversal_targets"
    _contract(train, test, m, "reversal_curse")
    assert len(train) == 5 * 30 * 4 and m["counts"] == {"forward": 50, "reversal": 50, other: 50}
    assert m["chance"] == {"forward": 0.25, "reversal": 0.25, other: 0.25}
    assert all(x["cluster"] == x["support"][0] for x in test)
    assert all(r["text"] == r["prompt"] + r["completion"] and r["completion"].startswith(" ") for r in train)
    kept = {}
    for r in train:
        g, name = r["facts"][0].split(":")
        kept.setdefault(g, set()).add(name)
    assert {g: len(v) for g, v in kept.items()} == {"p2d": 5, "d2p": 5, "both": 5}
    completions = {r["completion"].strip() for r in train}
    for x in test:
        person = x["support"][0].split(":")[1]
        assert x["support"][0].startswith("p2d:") and person in kept["p2d"]
        assert len(x["options"]) == 4 and len(set(x["options"])) == 4
        if x["split"] != "forward":
            assert x["options"][x["gold"]] == person
            others = set(x["options"]) - {person}
            x_pool = pool if x["split"] == "reversal" else other.split("_")[1]
            assert others <= (kept["d2p"] | kept["both"] if x_pool == "targets" else kept["p2d"])
            if x_pool == "targets":
                # distractors were completion targets in training (D2P names); the gold never was
                assert all(any(c.startswith(o) for c in completions) for o in others)
                assert not any(c.startswith(person) for c in completions)
        else:
            assert person in x["prompt"]


def test_reversal_curse_fewer_paraphrases_and_templates(tmp_runs):
    p = P.load("smoke", {**NO_B, "datasets.reversal_curse": {"people_per_group": 5, "distractor_pool": "targets",
                                                             "n_distractors": 3, "both_pools": True,
                                                             "examples_per_person": 3,
                                                             "templates_per_person": 2}})
    train, test, m = D.load(p, "reversal_curse")
    per = {}
    for r in train:
        per[r["facts"][0]] = per.get(r["facts"][0], 0) + 1
    assert len(per) == 15 and {f.split(":")[0]: n for f, n in per.items()} == {"p2d": 3, "d2p": 3, "both": 6}
    assert m["counts"] == {"forward": 10, "reversal": 10, "reversal_p2d": 10}
    assert {x["subset"] for x in test} == {"t0", "t1"}  # the first templates, the same for every person


def test_reversal_curse_paper_size_is_3600(tmp_runs):
    p = P.load("paper", {**NO_B, "finetune.splitting_ablation": ["simple_reversals"]})
    train, test, m = D.load(p, "reversal_curse")
    assert len(train) == 3600 and m["counts"] == {"forward": 300, "reversal": 300, "reversal_p2d": 300}
    source = runs.read_jsonl(D.REVERSAL_CURSE_DIR / "all_prompts_train.jsonl")
    assert sorted(r["text"] for r in train) == sorted(r["prompt"] + r["completion"] for r in source)


# ---------------------------------------------------------------------------------------------- checks
def test_checks_pass_on_all_three_and_catch_faults(tmp_runs, smoke, bundled_tokenizer):
    for n in OURS:
        train, test, _ = D.load(smoke, n)
        table = D.check(train, test, bundled_tokenizer)
        assert table["ok"].all(), (n, table.to_string())
        assert (table["n"] > 0).all()
    train, test, _ = D.load(smoke, "simple_reversals")
    x = dict(test[0])
    leak = f"{x['prompt']} {x['options'][x['gold']]}"
    leaked = [*train, {"id": "leak", "text": leak, "sentences": [leak[:-1]], "facts": []}]
    orphan = {**x, "support": ["nowhere"]}
    dup = {**x, "options": [x["options"][0]] * 2}
    shown = {**x, "prompt": x["prompt"] + " " + x["options"][0] + " So", "id": "shown"}
    table = D.check(leaked, [x, orphan, dup, shown], bundled_tokenizer).set_index("check")
    assert not table.loc["test prompt + gold not verbatim in train", "ok"]
    assert table.loc["every support fact in train", "failed"] == 1
    assert table.loc["options distinct", "failed"] == 1
    assert table.loc["train sentences reassemble the text", "failed"] == 1
    assert table.loc["no option shown in its prompt", "failed"] == 1
    cont, same = D.continuation_tokens(bundled_tokenizer, "The cat", "sat.")
    assert cont and same and bundled_tokenizer.decode(cont) == " sat."


# ------------------------------------------------------------------------------------- errors, kills
def test_killed_build_leaves_no_stamp_and_no_temp_files(tmp_runs, smoke, monkeypatch):
    out = D.build(smoke, "syllogisms")
    assert runs.is_fresh(out, D.cache_key(smoke, "syllogisms"))
    calls = []
    real = runs.write_jsonl

    def dies_on_test_file(path, rows):
        calls.append(path)
        if path.name == "test.jsonl":
            raise KeyboardInterrupt("killed")
        real(path, rows)

    monkeypatch.setattr(runs, "write_jsonl", dies_on_test_file)
    with pytest.raises(KeyboardInterrupt):
        D.build(smoke, "syllogisms", force=True)
    assert not runs.stamp_path(out).exists()
    assert not runs.is_fresh(out, D.cache_key(smoke, "syllogisms"))
    assert not [f for f in out.iterdir() if f.name.startswith(".")]  # no half-written temp files
    monkeypatch.setattr(runs, "write_jsonl", real)
    D.build(smoke, "syllogisms")  # the next build redoes it
    assert runs.is_fresh(out, D.cache_key(smoke, "syllogisms"))


def test_generator_raising_leaves_no_stamp(tmp_runs, smoke, monkeypatch):
    out = D.build(smoke, "simple_reversals")

    def boom(cfg, seed):
        raise RuntimeError("generator crashed")

    monkeypatch.setattr(D, "make_simple_reversals", boom)
    with pytest.raises(RuntimeError, match="crashed"):
        D.build(smoke, "simple_reversals", force=True)
    assert not runs.stamp_path(out).exists()


def test_empty_dataset_and_bad_input_raise_one_clear_error(tmp_runs, smoke, monkeypatch):
    monkeypatch.setattr(D, "make_syllogisms", lambda cfg, seed: ([], []))
    with pytest.raises(D.DatasetError, match="syllogisms: empty dataset"):
        D.build(smoke, "syllogisms")
    assert not runs.stamp_path(D.data_dir(smoke, "syllogisms")).exists()
    with pytest.raises(D.DatasetError, match="unknown dataset 'nope'"):
        D.build(smoke, "nope")
    with pytest.raises(D.DatasetError, match="'semantic_structure' is not in the params"):
        D.build(smoke, "semantic_structure")
    too_many = P.load("smoke", {**NO_B, "datasets.simple_reversals": {"n_facts": 2, "articles_per_fact": 50,
                                                                    "counterbalance": True}})
    with pytest.raises(D.DatasetError, match="articles_per_fact=50"):
        D.build(too_many, "simple_reversals")
    few = P.load("smoke", {**NO_B, "datasets.reversal_curse": {"people_per_group": 2, "distractor_pool": "p2d",
                                                               "n_distractors": 3, "both_pools": True,
                                                               "examples_per_person": None, "templates_per_person": 10}})
    with pytest.raises(D.DatasetError, match="n_distractors=3 needs at least 4 P2D people"):
        D.build(few, "reversal_curse")
    bad_gold = lambda cfg, seed: ([{"id": "a", "text": "x", "sentences": ["x"], "facts": []}],
                                  [{"id": "q", "split": "syllogism", "subset": "s", "prompt": "p",
                                    "options": ["a", "b"], "gold": 2, "support": [], "cluster": "q"}])
    monkeypatch.setattr(D, "make_syllogisms", bad_gold)
    with pytest.raises(D.DatasetError, match="gold 2 out of range"):
        D.build(smoke, "syllogisms")


def test_build_all_names_a_missing_generator_and_builds_the_rest(tmp_runs, monkeypatch):
    p = P.load("smoke", {"datasets.semantic_structure": None})
    monkeypatch.setitem(D.GENERATORS, "derivatoids", "lib.no_such_module:make_derivatoids")
    with pytest.raises(D.DatasetError, match=r"'derivatoids': its generator lib.no_such_module:make_derivatoids is missing"):
        D.build_all(p)
    for n in OURS:
        assert runs.is_fresh(D.data_dir(p, n), D.cache_key(p, n))


def test_command_line_builds_and_prints_the_table(tmp_runs, tmp_path, capsys):
    raw = yaml.safe_load((P.PARAMS_DIR / "smoke.yaml").read_text())
    raw["datasets"] = {k: v for k, v in raw["datasets"].items() if k in OURS}
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert D.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "reversal_curse" in out and "chance" in out
    run = P.load(str(path)).name  # a params file outside params/: mini-<hash of its contents>
    assert run.startswith("mini-")
    m = json.loads((tmp_runs / run / "data" / "syllogisms" / "manifest.json").read_text())
    assert m["counts"]["syllogism"] == 6
    table = D.counts_table(P.load(str(path)))
    assert list(table["dataset"].unique()) == list(OURS)


def test_files_load_with_hf_datasets(tmp_runs, smoke):
    hf = pytest.importorskip("datasets")
    for n in OURS:
        out = D.build(smoke, n)
        m = runs.read_json(out / "manifest.json")
        for f, count in (("train.jsonl", m["n_train"]), ("test.jsonl", sum(m["counts"].values()))):
            ds = hf.load_dataset("json", data_files=str(out / f), split="train", cache_dir=str(tmp_runs / "hf"))
            assert len(ds) == count, (n, f)
