"""make reproduce's time report: minutes per stage (the Makefile's stage_times.tsv) and per finished FT run."""
from __future__ import annotations

from lib import runs
from tools import timings


def test_report_lists_stages_and_only_finished_ft_runs(tmp_runs):
    run = tmp_runs / "x"
    run.mkdir(parents=True)
    (run / "stage_times.tsv").write_text("stage\tseconds\n01_data_construction\t60\n03_finetuning\t150\n")
    for name, stamped in (("ft-done", True), ("ft-killed", False)):
        folder = run / "ft" / "toy" / name
        runs.write_json(folder / "train_info.json", {"dataset": "toy", "splitting": "none", "seed": 0, "seconds": 90})
        if stamped:
            runs.mark_fresh(folder, {"k": name})
    st, ft = timings.stage_times(run), timings.ft_times(run)
    assert st.to_dict("list") == {"stage": ["01_data_construction", "03_finetuning"], "minutes": [1.0, 2.5]}
    assert ft["run"].tolist() == ["ft-done"] and ft["minutes"].tolist() == [1.5]
    text = timings.report(run)
    assert "FT runs: 1, 1.5 min of training" in text and "03_finetuning" in text


def test_report_without_a_run_says_so(tmp_runs):
    assert "(none recorded)" in timings.report(tmp_runs / "nothing")
