"""Caches that are verified, stages that are atomic as a whole, and bad input that gets one clear error.

Each test damages or kills something the way a user's machine can (a file cut short, edited, emptied; a kill
between two writes; a params file kept elsewhere under a built-in name) and asserts what a rerun then does.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lib import datasets as D
from lib import params as P
from lib import analysis, runs, scoring
from lib.models import ModelNotFoundError, check_available, resolve

ROOT = Path(__file__).resolve().parents[1]
# ------------------------------------------------------------------------------- verified dataset caches
def _cut(path: Path, n_lines: int) -> None:
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:n_lines]))


def _edit(path: Path) -> None:
    rows = runs.read_jsonl(path)
    rows[0]["text"] = rows[0]["text"] + " (edited)"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _half_line(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


@pytest.mark.parametrize("damage", [
    ("train.jsonl", lambda p: _cut(p, 3)),        # truncated to 3 lines
    ("train.jsonl", _edit),                         # edited in place, still valid JSON
    ("test.jsonl", lambda p: p.write_text("")),     # emptied
    ("test.jsonl", _half_line),                     # a line cut mid-way
    ("manifest.json", lambda p: p.write_text("{}")),
    ("train.jsonl", lambda p: p.unlink()),          # deleted
], ids=["truncated", "edited", "emptied", "cut-mid-line", "manifest", "deleted"])
def test_a_damaged_data_file_is_rebuilt_with_a_warning(tmp_runs, smoke, damage):
    name, hurt = damage
    train, test, manifest = D.load(smoke, "syllogisms")
    out = D.data_dir(smoke, "syllogisms")
    good = {f: (out / f).read_bytes() for f in D.FILES}
    hurt(out / name)
    with pytest.warns(UserWarning, match=rf"dataset 'syllogisms'.*{name.split('.')[0]}.*rebuilding"):
        train2, test2, manifest2 = D.load(smoke, "syllogisms")
    assert (train2, test2, manifest2) == (train, test, manifest)
    assert {f: (out / f).read_bytes() for f in D.FILES} == good


@pytest.mark.parametrize("stamp_text", ["[1, 2]", "{\"key_hash\": 3}", "not json", ""],
                         ids=["list", "wrong-shape", "garbage", "empty"])
def test_a_stamp_of_the_wrong_shape_is_stale_not_an_error(tmp_runs, smoke, stamp_text):
    out = D.build(smoke, "syllogisms")
    key = D.cache_key(smoke, "syllogisms")
    assert runs.is_fresh(out, key)
    runs.stamp_path(out).write_text(stamp_text)
    assert not runs.is_fresh(out, key)
    assert runs.stale_reason(out, key).startswith("stamp")
    D.build(smoke, "syllogisms")
    assert runs.is_fresh(out, key)


def test_a_jsonl_line_that_does_not_parse_names_the_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": 2\n')
    with pytest.raises(ValueError, match=r"x\.jsonl, line 2: not valid JSON"):
        runs.read_jsonl(path)


# ----------------------------------------------------------------------- the scoring stage, atomic as a whole
ITEMS = [{"id": f"i{k}", "split": "s", "subset": "", "prompt": f"Item {k} says", "options": ["yes", "no"],
          "gold": k % 2, "cluster": f"c{k // 2}"} for k in range(4)]


@pytest.fixture(scope="module")
def tiny(tiny_model_cfg):
    from lib.models import load_model

    return load_model(tiny_model_cfg)


def _evaluate(p, tiny):
    model, tok = tiny
    return scoring.evaluate(p, "toy", "pretrained", model, tok, ITEMS, progress=False)


def test_a_kill_between_a_stages_writes_leaves_nothing_a_rerun_trusts(tmp_runs, smoke, tiny, monkeypatch):
    p = smoke
    first = _evaluate(p, tiny)
    sp = scoring.scores_path(p, "toy", "pretrained")
    # a rerun with other items (a changed dataset) is killed after it wrote the scores, before the stamp
    items = ITEMS[:2]
    real = runs.write_text

    def dying_write(path, text):
        real(path, text)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(runs, "write_text", dying_write)
    model, tok = tiny
    with pytest.raises(KeyboardInterrupt):
        scoring.evaluate(p, "toy", "pretrained", model, tok, items, progress=False)
    monkeypatch.setattr(runs, "write_text", real)
    assert not runs.stamp_path(sp).exists()
    # neither the old items' nor the new items' results are taken from the half-written files
    assert scoring.cached_results(p, "toy", "pretrained", ITEMS) is None
    assert scoring.cached_results(p, "toy", "pretrained", items) is None
    assert _evaluate(p, tiny) == first == scoring.read_scores(p, "toy", "pretrained")


def test_a_score_file_edited_after_scoring_is_recomputed(tmp_runs, smoke, tiny):
    first = _evaluate(smoke, tiny)
    sp = scoring.scores_path(smoke, "toy", "pretrained")
    rows = runs.read_jsonl(sp)
    rows[0]["pred"] = 1 - rows[0]["pred"]  # a plausible wrong prediction
    runs.write_jsonl(sp, rows)
    assert scoring.cached_results(smoke, "toy", "pretrained", ITEMS) is None
    assert _evaluate(smoke, tiny) == first


def test_score_rows_carry_cluster_and_golds(tmp_runs, smoke, tiny):
    _evaluate(smoke, tiny)
    rows = scoring.read_scores(smoke, "toy", "pretrained")
    assert [r["cluster"] for r in rows] == [it["cluster"] for it in ITEMS]
    assert [r["golds"] for r in rows] == [[it["gold"]] for it in ITEMS]


def test_several_golds_count_any_of_them_and_raise_chance():
    items = [{"id": "a", "split": "s", "options": ["x", "y", "z"], "gold": 0, "golds": [0, 2]},
             {"id": "b", "split": "s", "options": ["x", "y", "z"], "gold": 1}]
    preds = [{"pred": 2, "pred_norm": 1, "pred_mi": 0}, {"pred": 1, "pred_norm": 0, "pred_mi": 1}]
    scores = [{**it, **pr, "loglikelihoods": [-1.0] * 3, "n_chars": [1] * 3, "loglikelihoods_uncond": [0.0] * 3,
               "golds": scoring.golds(it)} for it, pr in zip(items, preds)]  # as scoring.evaluate writes them
    rows = pd.DataFrame(analysis.item_rows(scores, dataset="d", condition="c", seed=0))
    mean = rows.groupby("metric")[["correct", "chance"]].mean()
    assert list(mean.loc[["acc", "acc_norm", "acc_mutual_info"], "correct"]) == [1.0, 0.0, 1.0]
    assert mean.loc["acc", "chance"] == pytest.approx((2 / 3 + 1 / 3) / 2)


# --------------------------------------------------------------------------------------- one run per params
def test_a_params_file_outside_params_gets_its_own_run_folder(tmp_path):
    own = tmp_path / "smoke.yaml"
    own.write_text((ROOT / "params" / "smoke.yaml").read_text().replace("seed: 0", "seed: 1", 1))
    same = tmp_path / "copy" / "smoke.yaml"
    same.parent.mkdir()
    same.write_text((ROOT / "params" / "smoke.yaml").read_text())
    names = {P.load("smoke").name, P.load(str(own)).name, P.load(str(same)).name}
    assert P.load("smoke").name == "smoke" and len(names) == 3
    assert all(n.startswith("smoke") for n in names)
    assert P.load(str(own)).name == P.load(str(own)).name  # deterministic: a hash of the contents


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("override, message", [
    ({"datasets": {k: None for k in P.DATASETS}}, "datasets: no dataset given"),
    ({"finetune.warmup_steps": 4, "finetune.steps": 4}, "warmup_steps: 4 is not below finetune.steps"),
    ({"finetune.seeds": [0, 0]}, "finetune.seeds: repeated seeds"),
    ({"finetune.splitting_ablation": ["derivatoids"], "datasets.derivatoids": None},
     r"splitting_ablation: \['derivatoids'\] not among the datasets"),
])
def test_cross_field_rules_give_one_clear_error(override, message):
    with pytest.raises(P.ParamsError, match=message):
        P.load("smoke", override)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "lib.params", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_params_command_prints_usage_not_a_traceback():
    for args in ([], ["a", "b", "c"], ["--help"]):
        r = _cli(*args)
        assert r.returncode == 2 and r.stderr.startswith("usage: python -m lib.params") and "Traceback" not in r.stderr


def test_params_command_names_the_problem_in_one_line():
    r = _cli("smoke", "[1]")
    assert r.returncode == 2 and r.stderr.strip() == "params: overrides must be a JSON object of dotted keys, got '[1]'"
    r = _cli("smoke", "{oops")
    assert r.returncode == 2 and r.stderr.startswith("params: overrides are not valid JSON")
    r = _cli("smoke", '{"model.name": "no-such-org/no-such-model"}', env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and "HF_HUB_OFFLINE=1 forbids downloading it" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_model_and_overrides_from_the_makefile_arrive_as_typed():
    """The Makefile passes MODEL and OVERRIDES through the environment; a quote in a value cannot break it."""
    r = _cli("--overrides", env={"MODEL": "./my \"odd\" model's dir", "OVERRIDES": '{"finetune.steps": 3}'})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"finetune.steps": 3, "model.name": "./my \"odd\" model's dir"}
    r = _cli("--overrides", env={"MODEL": "", "OVERRIDES": "[3]"})
    assert r.returncode == 2 and "OVERRIDES must be a JSON object" in r.stderr


def test_make_reproduce_refuses_a_bad_model_before_any_notebook(tmp_path):
    venv = Path(sys.executable).parents[1]  # -o: never (re)build the environment from inside a test
    r = subprocess.run(["make", "-s", "-o", f"{venv}/.installed", "reproduce", "PARAMS=smoke",
                        "MODEL=./no 'such' model", f"VENV={venv}", f"PY={sys.executable}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "is not a folder with a config.json" in r.stderr and "papermill" not in r.stdout + r.stderr


def test_relative_model_paths_resolve_against_the_repository_root(tmp_path, monkeypatch, tiny_model_dir):
    rel = os.path.relpath(tiny_model_dir, ROOT)
    monkeypatch.chdir(ROOT / "notebooks")  # where papermill runs the notebooks
    assert Path(resolve(rel)).resolve() == Path(tiny_model_dir).resolve()
    assert Path(resolve("./" + rel)).resolve() == Path(tiny_model_dir).resolve()
    check_available(rel)
    with pytest.raises(ModelNotFoundError, match="not a folder with a config.json"):
        resolve("./" + rel + "-missing")


def test_a_hub_id_offline_fails_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE=1"):
        check_available("no-such-org/no-such-model")


def test_tests_run_offline():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"



def test_an_option_count_the_generator_cannot_honour_is_an_error(tmp_runs):
    p = P.load("smoke", {"datasets.derivatoids.n_options": 400})
    with pytest.raises(D.DatasetError, match=r"n_options: 400 asked, but the generator finds at most \d+"):
        D.build(p, "derivatoids")
    assert not runs.stamp_path(D.data_dir(p, "derivatoids")).exists()


def test_an_icl_budget_beyond_the_window_is_clamped_with_a_warning(tmp_runs, tiny_model_cfg, tiny):
    from lib import icl

    p = P.load("smoke", {"model.name": tiny_model_cfg["name"], "icl.max_context_tokens": 100000,
                         "icl.max_test_items": 2})
    model, tok = tiny
    with pytest.warns(UserWarning, match=r"syllogisms: icl.max_context_tokens=100000 does not fit the model's "
                                         r"1024-token window"):
        icl.run_icl(p, "syllogisms", model=model, tok=tok, conditions=["pretrained"], progress=False)
