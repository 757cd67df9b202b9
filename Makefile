# genbench: every target installs into .venv first (once; the stamp file makes it idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp
MODEL ?= gan
ARGS ?=
DATASET ?= digits
MODELS ?= gan,vae,pixelcnn,nice,realnvp,ddpm
SEEDS ?= 0,1,2
LAUNCHER ?= joblib
ifeq ($(origin SWEEP_DIR), undefined)
SWEEP_DIR := results/sweeps/$(DATASET)_$(shell date +%Y-%m-%d_%H-%M-%S)
endif
DIR ?= $(shell ls -td results/sweeps/*/ 2>/dev/null | head -n 1)
COMMA := ,

.PHONY: install test bench bench-metrics bench-toyflows lint compare speed report validate clean gpu-bench claims reference

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

# make bench-metrics [ARGS="--quick"]: genbench's FID, KID and precision/recall against pytorch-fid and
# torch-fidelity on identical feature arrays (installs the `bench` extra); writes results/benchmarks/.
bench-metrics: install
	$(BIN)/python -c "import torch_fidelity" 2>/dev/null || $(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/metrics_vs_peers.py $(ARGS)

# make bench-toyflows [ARGS="--quick" or "--seeds 0"]: the toy 2-D RealNVP against normflows' at equal size, steps,
# batch and lr on ring8 and grid25, KL to truth by the suite's estimator and seconds per step, one thread
# (installs the `bench` extra); writes results/benchmarks/toy_flows_vs_normflows.{json,md}.
bench-toyflows: install
	$(BIN)/python -c "import normflows" 2>/dev/null || $(BIN)/pip install --quiet -e '.[bench]'
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/toy_flows_vs_normflows.py $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# make compare DATASET=digits MODELS=gan,vae,pixelcnn,nice,realnvp SEEDS=0,1,2 [LAUNCHER=submitit_local|slurm]:
# a Hydra multirun (conf/experiment/compare.yaml), one run directory per job under SWEEP_DIR, then the report there.
# A failed job leaves a `failed` record and the other jobs go on; the report always runs, and the target exits
# non-zero if any job failed (the sweep's status) or else if the report failed (its status).
compare: install
	$(BIN)/genbench bench -m experiment=compare dataset=$(DATASET) model=$(MODELS) seed=$(SEEDS) \
		hydra/launcher=$(LAUNCHER) hydra.sweep.dir=$(SWEEP_DIR) $(ARGS); \
	sweep=$$?; $(BIN)/genbench report $(SWEEP_DIR); report=$$?; \
	if [ $$sweep -ne 0 ]; then exit $$sweep; fi; exit $$report

# make speed MODEL=pixelcnn ARGS="dataset=mnist speed=cpu": one model, record in out_dir (as in `make bench`).
# make speed MODEL=gan,vae,pixelcnn ARGS="dataset=mnist": several models, records + report under results/speed/<device>/.
speed: install
	$(BIN)/genbench speed $(if $(findstring $(COMMA),$(MODEL)),'speed.models=[$(MODEL)]',model=$(MODEL)) $(ARGS)

# make claims: the experiments behind the report's "What the seed says, measured" (conf/experiment/claims_*.yaml)
# into results/claims, then its report. The speed sweep runs first, alone (timings); the bench sweeps run two jobs
# at a time, one thread each. ARGS pass through to every sweep (a GPU: ARGS="train.max_steps=10000 eval=paper").
CLAIMS := claims_chains claims_latent claims_training claims_training_vae claims_training_toy \
	claims_toy_gan claims_toy_vae claims_toy_realnvp claims_toy_nice
claims: install
	$(BIN)/genbench speed -m experiment=claims_speed $(ARGS); status=$$?; \
	for e in $(CLAIMS); do OMP_NUM_THREADS=1 $(BIN)/genbench bench -m experiment=$$e hydra.launcher.n_jobs=2 $(ARGS) \
		|| status=1; done; \
	$(BIN)/genbench report results/claims && exit $$status

# make reference EXPERIMENT=digits_all [OUT=results/reference/digits]: a committed reference comparison in three
# steps: train and evaluate every model and seed (two jobs at a time, one thread each, speed left out), then time
# each run's sampling alone (genbench eval eval.families=[speed]: nothing else on the machine), then the report.
EXPERIMENT ?= digits_all
OUT ?= results/reference/$(subst _all,,$(EXPERIMENT))
reference: install
	OMP_NUM_THREADS=1 $(BIN)/genbench bench -m experiment=$(EXPERIMENT) hydra.launcher.n_jobs=2 \
		eval.speed.enabled=false hydra.sweep.dir=$(OUT) $(ARGS); status=$$?; \
	for run in $$(dirname $$(find $(OUT) -name record.json) | sort); do \
		$(BIN)/genbench eval run_dir=$$run eval.families=[speed] || status=1; done; \
	$(BIN)/genbench report $(OUT) && exit $$status

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

# make gpu-bench: the prepared GPU run (benchmarks/gpu_bench.py), at most 8 minutes on one GPU, records, summary and
# plot under results/gpu/<device>/. make gpu-bench SMOKE=1: the same script on the CPU at tiny sizes (what CI runs),
# output in a temporary folder. No install step: it runs from the repository with PYTHONPATH=. on whichever Python
# has torch (this checkout's .venv if there is one), and needs no hydra, omegaconf or antlr4.
GPU_BENCH_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
gpu-bench:
	PYTHONPATH=. $(GPU_BENCH_PYTHON) benchmarks/gpu_bench.py $(if $(SMOKE),--smoke) $(ARGS)
