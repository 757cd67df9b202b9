# genbench: every target installs into .venv first (once; the stamp file makes it idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp
MODEL ?= gan
ARGS ?=

.PHONY: install test bench lint compare speed report clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/genbench bench model=$(MODEL) $(ARGS)

lint: install
	$(BIN)/ruff check genbench models tests
	$(BIN)/ruff format --check genbench models tests

compare: install
	@echo "make compare: not built yet (issue: comparisons and reports). Use 'genbench bench -m model=gan,vae seed=0,1,2'." >&2; exit 2

speed: install
	@echo "make speed: not built yet (issue: sampling-speed harness)." >&2; exit 2

report: install
	@echo "make report: not built yet (issue: comparisons and reports)." >&2; exit 2

clean:
	rm -rf $(VENV) *.egg-info
