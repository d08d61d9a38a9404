import pytest
import yaml

from lib import params as P


@pytest.mark.parametrize("name", ["smoke", "cpu", "paper", "example_own"])
def test_shipped_params_validate(name):
    p = P.load(name)
    assert p.name == name
    assert p.dataset_names, "every shipped params file builds at least one dataset"


def test_params_dir_holds_only_params_files():
    """params/ holds the params files, and one folder of accelerate launch configs (not params files)."""
    assert sorted(x.name for x in P.PARAMS_DIR.iterdir() if x.is_file()) == [
        "cpu.yaml", "example_own.yaml", "paper.yaml", "smoke.yaml"]
    assert [x.name for x in P.PARAMS_DIR.iterdir() if x.is_dir()] == ["accelerate"]


def _raw():
    return yaml.safe_load((P.PARAMS_DIR / "smoke.yaml").read_text())


def _write(tmp_path, raw):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_unknown_key_names_key_and_file(tmp_path):
    raw = _raw()
    raw["finetune"]["stepz"] = 3
    with pytest.raises(P.ParamsError, match=r"mine\.yaml(.|\n)*finetune\.stepz: unknown key"):
        P.load(str(_write(tmp_path, raw)))


def test_wrong_type_names_key(tmp_path):
    raw = _raw()
    raw["finetune"]["steps"] = "three"
    with pytest.raises(P.ParamsError, match=r"finetune\.steps"):
        P.load(str(_write(tmp_path, raw)))


def test_missing_value_names_key(tmp_path):
    raw = _raw()
    del raw["model"]["dtype"]
    with pytest.raises(P.ParamsError, match=r"model\.dtype: missing value"):
        P.load(str(_write(tmp_path, raw)))


def test_missing_key_inside_a_dataset(tmp_path):
    raw = _raw()
    del raw["datasets"]["syllogisms"]["n_items"]
    with pytest.raises(P.ParamsError, match=r"datasets\.syllogisms\.n_items: missing value"):
        P.load(str(_write(tmp_path, raw)))


def test_unknown_params_file():
    with pytest.raises(P.ParamsError, match="params file not found"):
        P.load("nonexistent")


def test_overrides_apply_and_get_their_own_run_name():
    p = P.load("smoke", {"finetune.steps": 7})
    assert p.finetune.steps == 7
    assert p.name.startswith("smoke-") and p.name != "smoke"
    with pytest.raises(P.ParamsError, match="unknown key 'stepz'"):
        P.load("smoke", {"finetune.stepz": 7})
