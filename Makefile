# genbench: every target installs into .venv first (once; the stamp file makes it idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp
MODEL ?= gan
ARGS ?=
DATASET ?= digits
MODELS ?= gan,vae,pixelcnn,nice,realnvp
SEEDS ?= 0,1,2
LAUNCHER ?= joblib
ifeq ($(origin SWEEP_DIR), undefined)
SWEEP_DIR := results/sweeps/$(DATASET)_$(shell date +%Y-%m-%d_%H-%M-%S)
endif
DIR ?= $(shell ls -td results/sweeps/*/ 2>/dev/null | head -n 1)
COMMA := ,

.PHONY: install test bench lint compare speed report validate clean

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
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# make compare DATASET=digits MODELS=gan,vae,pixelcnn,nice,realnvp SEEDS=0,1,2 [LAUNCHER=submitit_local|slurm]:
# a Hydra multirun (conf/experiment/compare.yaml), one run directory per job under SWEEP_DIR, then the report there.
# A failed job leaves a `failed` record; the report still runs and the target exits with the sweep's status.
compare: install
	$(BIN)/genbench bench -m experiment=compare dataset=$(DATASET) model=$(MODELS) seed=$(SEEDS) \
		hydra/launcher=$(LAUNCHER) hydra.sweep.dir=$(SWEEP_DIR) $(ARGS); \
	status=$$?; $(BIN)/genbench report $(SWEEP_DIR) && exit $$status

# make speed MODEL=pixelcnn ARGS="dataset=mnist speed=cpu": one model, record in out_dir (as in `make bench`).
# make speed MODEL=gan,vae,pixelcnn ARGS="dataset=mnist": several models, records + report under results/speed/<device>/.
speed: install
	$(BIN)/genbench speed $(if $(findstring $(COMMA),$(MODEL)),'speed.models=[$(MODEL)]',model=$(MODEL)) $(ARGS)

# make report [DIR=<folder with record.json files>]: tables and figures; default DIR = the newest sweep.
report: install
	@test -n "$(DIR)" || { echo "make report: no sweep under results/sweeps; give DIR=<folder with records>" >&2; exit 2; }
	$(BIN)/genbench report $(DIR)

# make validate [EVAL=fast|default|paper]: every estimator against a known truth (genbench/validate.py); prints the
# table, writes results/validate/validate_$(EVAL).{json,md}, exits non-zero if a row fails. default: minutes on a CPU.
EVAL ?= default
validate: install
	$(BIN)/genbench validate eval=$(EVAL) $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info
