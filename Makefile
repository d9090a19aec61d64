# Two-command quick start: `make demo`, `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: setup demo test lint format bench bench-disk ablation ablation-panel reproduce panel panel-folds report-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# A pinned torch first when none is present (an existing one, e.g. a CPU build, is kept), then the package.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/perturbscore demo --out $(DEMO_OUT) --overwrite

test: $(STAMP)
	MPLBACKEND=agg $(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/mypy --no-incremental

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks tools
	$(BIN)/ruff format src tests benchmarks tools

# The fast benchmarks (BENCHMARKS.md sections 1-4); each prints its table.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_step.py
	$(BIN)/python benchmarks/bench_recognizer_fit.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_score.py

# Writes a 15.6 GiB simulated genome-wide screen to $TMPDIR once, then trains from disk (BENCHMARKS.md section 5).
bench-disk: $(STAMP)
	$(BIN)/python benchmarks/bench_disk.py

ablation: $(STAMP)
	$(BIN)/perturbscore reproduce --ablation --seeds 0 --max-steps 300 --out runs/ablation --overwrite --no-progress
	$(call publish,ablation,perturbscore reproduce --ablation --seeds 0 --max-steps 300)

# Each part of the default removed, on every screen of the panel (docs/results/ablation_panel.md): 3 seeds,
# 300 steps each; about an hour on two cores. The raw results stay in runs/ablation-panel/panel.json.
ablation-panel: $(STAMP)
	$(BIN)/perturbscore reproduce --panel --ablation --seeds 0,1,2 --max-steps 300 --resamples 20 --out runs/ablation-panel --overwrite --no-progress
	cp runs/ablation-panel/panel.md docs/results/ablation_panel.md

reproduce: $(STAMP)
	$(BIN)/perturbscore reproduce --seeds 0,1,2 --max-steps 1500 --out runs/reproduce --overwrite --no-progress
	$(call publish,reproduce,perturbscore reproduce --seeds 0$(comma)1$(comma)2 --max-steps 1500)
	cp runs/reproduce/plots/figure1.png docs/results/figure1.png

# The panel of simulated screens (docs/results/panel.md): the default and every baseline, 3 seeds each, with the
# shipped training settings (PANEL_STEPS=600 for a shorter run; the table says which).
PANEL_STEPS ?=
panel: $(STAMP)
	$(BIN)/perturbscore reproduce --panel --seeds 0,1,2 $(if $(PANEL_STEPS),--max-steps $(PANEL_STEPS),) --resamples 20 --out runs/panel --overwrite --no-progress
	cp runs/panel/panel.md runs/panel/panel.json docs/results/

# The panel's screens where the default is above the best baseline at some k on the seed's 10 held-out knockouts,
# with every knockout held out once (5 folds x 3 seeds each; docs/results/panel_folds.md): gaps measured on all
# 64 knockouts, not 10.
PANEL_FOLDS_SCREENS ?= shift_none,genes_15k
panel-folds: $(STAMP)
	$(BIN)/perturbscore reproduce --panel --folds 5 --panel-screens $(PANEL_FOLDS_SCREENS) --seeds 0,1,2 --resamples 20 --out runs/panel-folds --overwrite --no-progress
	cp runs/panel-folds/panel.md docs/results/panel_folds.md
	cp runs/panel-folds/panel.json docs/results/panel_folds.json

# Needs Chromium (apt-get install chromium): renders the demo's report at 1280 px, checks the screenshot is not
# blank and that every table shows all of its columns without sideways scrolling (fails when one is hidden).
report-check: $(STAMP)
	$(BIN)/perturbscore report $(DEMO_OUT) --overwrite --open-check
	$(BIN)/python tools/report_check.py $(DEMO_OUT)/report.html
	$(BIN)/python tools/report_layout.py $(DEMO_OUT)/report.html --width 1280

comma := ,
# docs/results/NAME.md and .json: the table of runs/NAME that the documentation includes, with the command that made it.
define publish
	{ echo 'Written by `make $(1)` (`$(2)`) on '"$$(date -u +%F)"'.'; echo; cat runs/$(1)/eval.md; } > docs/results/$(1).md
	cp runs/$(1)/eval.json docs/results/$(1).json
endef

DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e ".[docs]"
	touch $(DOCS_STAMP)

.PHONY: docs docs-check

# The documentation site, into docs/_build/html: the API and CLI reference are generated from the code and the
# tutorial notebook runs, at every build; any warning or notebook error fails it.
docs: $(DOCS_STAMP)
	MPLBACKEND=agg $(BIN)/sphinx-build -b html -W --keep-going -q docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

# Screenshots of the built index and tutorial pages (headless Chromium), every page the index links to, and
# every public function and CLI command in the reference.
docs-check: docs
	$(BIN)/python tools/docs_check.py docs/_build/html --screenshots docs/_build/screenshots

clean:
	rm -rf $(VENV) runs .pytest_cache docs/_build
