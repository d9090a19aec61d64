# Two-command quick start: `make demo`, `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: setup demo test lint format bench bench-disk ablation reproduce report-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch lies on these machines; a bare `torch` would pull a multi-GB GPU build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/perturbscore demo --out $(DEMO_OUT) --overwrite

test: $(STAMP)
	MPLBACKEND=agg $(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_step.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_score.py

# Writes a ~17 GiB simulated genome-wide screen to $TMPDIR once (about 30 min), then trains from disk.
bench-disk: $(STAMP)
	$(BIN)/python benchmarks/bench_disk.py

ablation: $(STAMP)
	$(BIN)/perturbscore reproduce --ablation --seeds 0 --max-steps 300 --out runs/ablation --overwrite --no-progress

reproduce: $(STAMP)
	$(BIN)/perturbscore reproduce --seeds 0,1,2 --max-steps 1500 --out runs/reproduce --overwrite --no-progress

report-check: $(STAMP)
	$(BIN)/perturbscore report $(DEMO_OUT) --overwrite
	$(BIN)/python benchmarks/report_check.py $(DEMO_OUT)/report.html

clean:
	rm -rf $(VENV) runs .pytest_cache
