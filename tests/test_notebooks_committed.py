"""Committed notebooks are stripped, have kernelspec python3, and start with the papermill parameters cell."""
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "papermill" not in nb["metadata"], "strip papermill metadata (make strip)"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "notebook has no code"
    for c in code:
        assert not c.get("outputs") and c.get("execution_count") is None, f"{path.name}: committed with outputs"
    first = code[0]
    assert "parameters" in first["metadata"].get("tags", []), "first code cell must be tagged 'parameters'"
    src = "".join(first["source"])
    assert 'params_name = "smoke"' in src, "the parameters cell defaults to the smoke params (nbval runs defaults)"
    assert all(line.startswith(("params_name", "overrides", "#")) or not line.strip() for line in src.splitlines()), \
        "the parameters cell holds only params_name and overrides"
