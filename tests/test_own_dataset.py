"""A dataset of your own (issue 26): a folder of train.jsonl + test.jsonl named in the params runs through
every stage like a generated set, and every broken rule of the data contract is one line naming the file and
line, exit code 2 from `python -m lib.params`, before anything is written."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from lib import datasets, file_datasets, runs
from lib import params as P

EXAMPLE = P.ROOT / "data" / "examples" / "fictional_people"


# ------------------------------------------------------------------------------------------------ helpers
def _lines(path, n=None) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[:n]


def _rows(path, n=None) -> list[dict]:
    return [json.loads(x) for x in _lines(path, n)]


def _dump(rows) -> list[str]:
    """Rows as JSONL lines; a str is written as it is (a line that is not JSON)."""
    return [r if isinstance(r, str) else json.dumps(r) for r in rows]


def _test_items():
    """The example's items about p00 and p01 (lines 1, 2 forward; 3, 4 reversal)."""
    return [x for x in _rows(EXAMPLE / "test.jsonl") if x["cluster"] in ("p00", "p01")]


def _folder(tmp_path, train=None, test=None):
    """A dataset folder: the example's first 4 training rows and its p00/p01 items, or the rows given."""
    folder = tmp_path / "mine"
    folder.mkdir(exist_ok=True)
    train = _rows(EXAMPLE / "train.jsonl", 4) if train is None else train
    test = _test_items() if test is None else test
    for name, rows in (("train.jsonl", train), ("test.jsonl", test)):
        (folder / name).write_text("".join(x + "\n" for x in _dump(rows)), encoding="utf-8")
    return folder


def _params_file(tmp_path, folder, learning_check="forward", **augment):
    """A params file: smoke's settings with the tiny random model and only the dataset `mine` from files."""
    raw = yaml.safe_load((P.PARAMS_DIR / "example_own.yaml").read_text())
    raw["model"]["name"] = "tiny-random"
    raw["datasets"] = {"mine": {"path": str(folder), "learning_check": learning_check}}
    raw["finetune"]["splitting_ablation"] = []
    raw["finetune"]["recipes"] = {}
    raw["augment"].update(augment)
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _cli(tmp_path, capsys, params_file):
    """`python -m lib.params <file>` in process: (exit code, stderr lines)."""
    rc = P.main([str(params_file)])
    return rc, capsys.readouterr().err.splitlines()


# ------------------------------------------------------------------------------------------- the example
def test_example_files_are_what_the_script_writes(tmp_path):
    """data/examples/make_fictional_people.py is deterministic and wrote the committed files."""
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        import make_fictional_people as M
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    M.write(tmp_path)
    for name in ("train.jsonl", "test.jsonl"):
        assert (tmp_path / name).read_bytes() == (EXAMPLE / name).read_bytes(), name
    assert len(_rows(EXAMPLE / "test.jsonl")) == 40 and len(_rows(EXAMPLE / "train.jsonl")) == 40


def test_example_params_name_only_the_file_dataset():
    p = P.load("example_own")
    assert p.dataset_names == ["fictional_people"] and list(p.datasets.files) == ["fictional_people"]
    assert p.datasets.fictional_people.folder() == EXAMPLE
    assert file_datasets.file_problems(p, "fictional_people") == []


def test_build_copies_normalises_and_records_the_learning_check(tmp_runs):
    p = P.load("example_own")
    out = datasets.build(p, "fictional_people")
    assert sorted(f.name for f in out.iterdir()) == ["README.md", "manifest.json", "test.jsonl",
                                                     "train.jsonl"]
    train, test, m = datasets.load(p, "fictional_people")
    assert m["learning_check"] == "forward" and m["generator"] == file_datasets.FILE_GENERATOR
    assert m["counts"] == {"forward": 20, "reversal": 20}
    assert m["chance"] == {"forward": 0.25, "reversal": 0.25}
    assert m["params"] == {"path": "data/examples/fictional_people", "learning_check": "forward"}
    article, qa = train[0], train[1]
    assert article["sentences"] == [
        "Alden Ashgrove grew up far from the capital.", "Alden Ashgrove was born in the town of Larkspire."]
    assert article["facts"] == ["p00-article"]
    assert qa["sentences"] == [qa["text"]] and qa["prompt"] + qa["completion"] == qa["text"]
    assert test[0]["subset"] == "all" and test[0]["cluster"] == "p00"
    card = (out / "README.md").read_text()
    assert "data/examples/fictional_people" in card and "license: other" in card
    checks = datasets.check(train, test)
    assert checks["ok"].all(), checks[~checks["ok"]]
    table = datasets.counts_table(p)
    assert table.set_index("split")["learning_check"].to_dict() == {"forward": True, "reversal": False}


def test_same_files_give_the_same_bytes(tmp_path, monkeypatch):
    p = P.load("example_own")
    built = []
    for k in range(2):
        monkeypatch.setattr(runs, "RUNS", tmp_path / f"runs{k}")
        built.append(datasets.build(p, "fictional_people"))
    for f in ("train.jsonl", "test.jsonl", "manifest.json", "README.md"):
        assert (built[0] / f).read_bytes() == (built[1] / f).read_bytes(), f


def test_learning_check_split_for_built_in_and_file_datasets(tmp_runs):
    p = P.load("example_own")
    assert datasets.learning_check_split("fictional_people", p) == "forward"
    assert datasets.learning_check_split("fictional_people", {"learning_check": "forward"}) == "forward"
    assert datasets.learning_check_split("syllogisms", p) == "premise"
    assert datasets.learning_check_split("semantic_structure", {}) == "rephrase"  # a manifest without it
    with pytest.raises(datasets.DatasetError, match="no learning-check split"):
        datasets.learning_check_split("mystery", {})


def test_a_changed_file_rebuilds(tmp_path, tmp_runs):
    folder = _folder(tmp_path)
    p = P.load(str(_params_file(tmp_path, folder)))
    first = datasets.load(p, "mine")[2]["sha256"]["test.jsonl"]
    test = _rows(folder / "test.jsonl")
    (folder / "test.jsonl").write_text("".join(json.dumps(x) + "\n" for x in test[:-1]))
    _, items, m = datasets.load(p, "mine")
    assert len(items) == len(test) - 1 and m["sha256"]["test.jsonl"] != first


# ------------------------------------------------------------------------------------------- validation
def _set(i, value):
    return lambda rows: rows.__setitem__(i, value)


def _upd(i, **kw):
    return lambda rows: rows[i].update(kw)


def _pop(i, key):
    return lambda rows: rows[i].pop(key)


# name -> (file, change to its rows, the one problem line expected)
CASES = {
    "not json": ("test", _set(0, '{"id": "x", "split": '), r"test\.jsonl:1: not valid JSON"),
    "not an object": ("test", _set(0, "[1, 2]"), r"test\.jsonl:1: not a JSON object"),
    "missing field": ("test", _pop(0, "prompt"), r"test\.jsonl:1: missing field 'prompt'"),
    "missing gold": ("test", _pop(0, "gold"), r"test\.jsonl:1: missing field 'gold' \(or 'golds'\)"),
    "gold outside the options": ("test", _upd(0, gold=4), r"test\.jsonl:1: gold 4 is outside the 4 options"),
    "golds outside the options": ("test", _upd(0, golds=[0, 7]),
                                  r"test\.jsonl:1: golds \[0, 7\] has an index outside the 4 options"),
    "fewer than 2 options": ("test", _upd(0, options=["Larkspire."], gold=0),
                             r"test\.jsonl:1: fewer than 2 options \(1\)"),
    "duplicate options": ("test", _upd(0, options=["A.", "B.", "A."], gold=0),
                          r"test\.jsonl:1: duplicate options: 'A\.'"),
    "duplicate test ids": ("test", _upd(2, id="p00-forward"),
                           r"test\.jsonl:3: duplicate id 'p00-forward' \(first on line 1\)"),
    "empty split name": ("test", _upd(0, split=""),
                         r"test\.jsonl:1: field 'split' must be a non-empty string \(an empty split name\)"),
    "support naming no document": ("test", _upd(0, support=["p99-article"]),
                                   r"test\.jsonl:1: support 'p99-article' names no training document"),
    "prompt ends with a space": ("test", _upd(0, prompt="Q: In which town was Alden Ashgrove born? A: In "),
                                 r"test\.jsonl:1: the prompt ends with whitespace"),
    "train: missing text": ("train", _pop(0, "text"), r"train\.jsonl:1: missing field 'text'"),
    "train: duplicate ids": ("train", _upd(3, id="p00-article"),
                             r"train\.jsonl:4: duplicate id 'p00-article' \(first on line 1\)"),
    "train: text is not prompt + completion": ("train", _upd(1, completion=" Elsewhere."),
                                               r"train\.jsonl:2: field 'text' must be prompt \+ completion"),
    "train: sentences not in the text": ("train", _upd(0, sentences=["Not in it."]),
                                         r"train\.jsonl:1: field 'sentences': not found"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_broken_rule_is_one_line_with_file_and_line(case, tmp_path, tmp_runs, capsys):
    which, change, expected = CASES[case]
    rows = {"train": _rows(EXAMPLE / "train.jsonl", 4), "test": _test_items()}
    change(rows[which])
    path = _params_file(tmp_path, _folder(tmp_path, rows["train"], rows["test"]))
    rc, err = _cli(tmp_path, capsys, path)
    assert rc == 2
    hits = [line for line in err if re.search(expected, line)]
    assert len(hits) == 1, err
    assert str(tmp_path / "mine") in hits[0] or "mine/" in hits[0]
    assert not tmp_runs.exists(), "validation wrote a run folder"
    # the notebooks' build refuses it the same way, before anything is written
    p = P.load(str(path))
    with pytest.raises(datasets.DatasetError, match=expected):
        datasets.build(p, "mine")
    assert not datasets.data_dir(p, "mine").exists()


def test_every_problem_at_once(tmp_path, tmp_runs, capsys):
    test = _test_items()
    test[0]["gold"] = 9
    test[1] = "not json"
    test[3].update(options=["only one."], gold=0)
    rc, err = _cli(tmp_path, capsys, _params_file(tmp_path, _folder(tmp_path, test=test)))
    assert rc == 2 and err[0] == "params: 3 problems:"
    assert [line.split(": ", 1)[0].rsplit(":", 1)[1] for line in err[1:]] == ["1", "2", "4"]  # line order


@pytest.mark.parametrize("which", ["train", "test"])
def test_an_empty_file_is_an_empty_split(which, tmp_path, tmp_runs, capsys):
    folder = _folder(tmp_path, **{which: []})
    rc, err = _cli(tmp_path, capsys, _params_file(tmp_path, folder))
    assert rc == 2 and any(f"{which}.jsonl: no " in line and "(an empty file)" in line for line in err), err


def test_a_learning_check_split_that_does_not_exist(tmp_path, tmp_runs, capsys):
    rc, err = _cli(tmp_path, capsys, _params_file(tmp_path, _folder(tmp_path), learning_check="fowrard"))
    assert rc == 2
    assert any("datasets.mine.learning_check: split 'fowrard' has no item in" in line
               and "(its splits: forward, reversal)" in line for line in err), err


def test_a_missing_folder_or_file_fails_when_the_params_load(tmp_path, tmp_runs, capsys):
    path = _params_file(tmp_path, tmp_path / "nowhere")
    with pytest.raises(P.ParamsError, match=r"datasets\.mine\.path: folder not found: .*nowhere"):
        P.load(str(path))
    assert _cli(tmp_path, capsys, path)[0] == 2
    folder = _folder(tmp_path, test=None)
    (folder / "test.jsonl").unlink()
    with pytest.raises(P.ParamsError, match=r"datasets\.mine\.path: file not found: .*mine/test\.jsonl"):
        P.load(str(_params_file(tmp_path, folder)))
    assert not tmp_runs.exists()


def test_a_missing_prompt_file_fails_when_the_params_load(tmp_path, tmp_runs):
    path = _params_file(tmp_path, _folder(tmp_path), local_prompt="no_such_prompt.txt")
    with pytest.raises(P.ParamsError, match=r"augment\.local_prompt: prompt not found: 'no_such_prompt"):
        P.load(str(path))


def test_null_switches_a_file_dataset_off():
    with pytest.raises(P.ParamsError, match="datasets: no dataset given"):
        P.load("example_own", {"datasets.fictional_people": None})
    p = P.load("smoke", {"datasets.derivatoids": None})
    assert "derivatoids" not in p.dataset_names and not p.datasets.files


def test_relative_paths_resolve_from_the_repository_root(tmp_path):
    raw = yaml.safe_load(_params_file(tmp_path, "data/examples/fictional_people").read_text())
    p = P.validate(raw, "rel")
    assert p.datasets.files["mine"].folder() == EXAMPLE


@pytest.mark.parametrize("entry, expected", [
    ({"Mine": {"path": "x", "learning_check": "f"}}, r"datasets\.Mine: a dataset's name must be lowercase"),
    ({"simple_reversal": {"n_facts": 6}}, r"datasets\.simple_reversal: unknown dataset \(built-in: "),
    ({"mine": {"path": "data/examples/fictional_people"}}, r"datasets\.mine\.learning_check: missing value"),
])
def test_dataset_entries_are_named_clearly(entry, expected, tmp_path):
    raw = yaml.safe_load(_params_file(tmp_path, EXAMPLE).read_text())
    raw["datasets"] = entry
    with pytest.raises(P.ParamsError, match=expected):
        P.validate(raw, "x")


def test_the_command_line_exits_2_and_writes_no_run_folder(tmp_path):
    """The Makefile's first step, as a process: `python -m lib.params <file>`."""
    test = _test_items()
    test[1]["gold"] = 5
    path = _params_file(tmp_path, _folder(tmp_path, test=test))
    name = P.run_name(path)
    proc = subprocess.run([sys.executable, "-m", "lib.params", str(path)], cwd=P.ROOT, capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"{tmp_path / 'mine' / 'test.jsonl'}:2: gold 5 is outside the 4 options" in proc.stderr
    assert not (runs.RUNS / name).exists()


# ---------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """The example through the lib functions notebooks 01-04 and 05's item frame call, with the tiny random
    model and smoke-sized FT (numbers mean nothing: every stage must run and score every item)."""
    from lib import analysis, augmentation, icl, training
    from tools import lm_eval_tasks
    from lib.models import load_model

    mp = pytest.MonkeyPatch()
    mp.setattr(runs, "RUNS", tmp_path_factory.mktemp("own") / "runs")
    p = P.load("example_own", {"model.name": "tiny-random", "finetune.steps": 2, "finetune.warmup_steps": 0,
                               "finetune.recipes": {}, "icl.max_test_items": 4, "augment.max_new_tokens": 4})
    datasets.build_all(p)                                                     # notebook 01
    model, tok = load_model(p.model)
    icl.run_icl(p, "fictional_people", model=model, tok=tok, progress=False)  # notebook 02
    training.run_ft_arm(p, "fictional_people", progress=False)               # notebook 03
    augmentation.run_all(p, "fictional_people", progress=False)              # notebook 04
    tasks = lm_eval_tasks.export(p)
    yield p, analysis.read_items(p), datasets.baselines_table(p), tasks
    mp.undo()


def test_every_stage_scores_every_item(own_run):
    p, items, _, _ = own_run
    assert items.attrs["missing"] == []
    conds = set(items["condition"])
    assert {"pretrained", "icl", "icl_n2", "icl_n4", "icl_fit", "icl_bm25", "icl_oracle", "ft", "aug_both",
            "ft_repeat"} <= conds
    assert {"ft_nosplit", "ft_split_independent", "ft_split_cumulative"} <= conds  # the splitting ablation
    test = datasets.load(p, "fictional_people")[1]
    per = items[(items.metric == "acc") & (items.condition == "icl")]
    assert len(per) == 2 * p.icl.max_test_items and set(per["split"]) == {"forward", "reversal"}
    assert set(items["item"]) <= {x["id"] for x in test} and set(items["dataset"]) == {"fictional_people"}


def test_icl_fit_chooses_on_the_params_learning_check(own_run):
    from lib import icl

    info = icl.read_info(own_run[0], "fictional_people")
    assert info["icl_fit"]["split"] == "forward" and info["icl"]["n_tokens"] > 0


def test_baselines_and_lm_eval_tasks(own_run):
    _, _, table, tasks = own_run
    assert set(table["dataset"]) == {"fictional_people"} and set(table["split"]) == {"forward", "reversal"}
    assert {"prior_option", "overlap_max", "cooccurrence"} <= set(table["baseline"])
    assert len(tasks["fictional_people"]) == 4  # 2 splits x (pretrained, icl)


def test_learning_check_split_for_built_in_file_and_hand_made_datasets():
    p = P.load("example_own")
    assert datasets.learning_check_split("fictional_people", p) == "forward"
    assert datasets.learning_check_split("syllogisms", {}) == "premise"
    assert datasets.learning_check_split("toy", {}, {"reversal", "rephrase"}) == "rephrase"
    assert datasets.learning_check_split("toy", {}, {"reversal"}) is None
    with pytest.raises(datasets.DatasetError, match="no learning-check split known"):
        datasets.learning_check_split("toy", {})
