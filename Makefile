# genbench: every target installs into .venv first (once; the stamp file makes it idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp
MODEL ?= gan
ARGS ?=
COMMA := ,

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

# make speed MODEL=pixelcnn ARGS="dataset=mnist speed=cpu": one model, record in out_dir (as in `make bench`).
# make speed MODEL=gan,vae,pixelcnn ARGS="dataset=mnist": several models, records + report under results/speed/<device>/.
speed: install
	$(BIN)/genbench speed $(if $(findstring $(COMMA),$(MODEL)),'speed.models=[$(MODEL)]',model=$(MODEL)) $(ARGS)

report: install
	@echo "make report: not built yet (issue: comparisons and reports)." >&2; exit 2

clean:
	rm -rf $(VENV) *.egg-info
