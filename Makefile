# mocobench: `make setup` once, then `make reproduce-table` (the paper's ablation grids + report) or `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= tiny
EXECUTOR ?= local
ABLATIONS_ARGS ?=
# seeds per grid cell (empty: the grid's / the preset's default, tiny 6, cifar10 3, others 1); SEEDS=1: quick run
SEEDS ?=
# SEED_START: the first seed (empty: the preset's, tiny 1000; design pilots 100-199; the first tiny set 0)
SEED_START ?=
# SETS: config fields set for every run and baseline, e.g. SETS="eval_split=val" for a design pilot
SETS ?=
SEEDS_ARG = $(if $(SEEDS),--seeds $(SEEDS)) $(if $(SEED_START),--seed-start $(SEED_START)) $(foreach s,$(SETS),--set $(s))
PYTEST_ARGS ?=

.PHONY: setup data test bench gpu-check reproduce-table report slurm-up slurm-down setup-transfer setup-browser clean-runs

setup: $(VENV)/.installed data setup-transfer

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Fashion-MNIST for the tiny preset: Debian's package when root with apt, else torchvision's download
data: $(VENV)/.installed
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null)) \
	  || echo "apt could not install dataset-fashion-mnist; falling back to torchvision's download"; fi
	$(PY) -m pretrain.fetch_data

setup-transfer: $(VENV)/.installed
	bash transfer/setup_detectron2.sh

setup-browser:
	bash reports/setup_browser.sh

# the import contracts first (pyproject.toml [tool.importlinter]: the layers), then the tests
test: $(VENV)/.installed
	@test -d /usr/share/datasets/fashion-mnist || test -d data/FashionMNIST/raw || $(MAKE) data
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) -m pretrain.bench --preset $(PRESET) --compare

# the GPU path on one CUDA machine (OUT=dir for the log; OFFICIAL_MOCO=dir of a facebookresearch/moco checkout)
gpu-check: $(VENV)/.installed
	PYTHON=$(PY) bash scripts/gpu_check.sh $(OUT)

# the paper's ablation grids at PRESET scale (SEEDS seeds per cell), the baselines (random init, raw pixels), then
# the report. Locally at tiny scale two runs at a time with one
# torch thread each (on 2 cores ~1.2x the throughput of one run with two threads; threads are not in the config hash)
LOCAL_ARGS ?= $(if $(filter tiny,$(PRESET)),--parallel 2 --set threads=1)
reproduce-table: $(VENV)/.installed
	@if [ -z "$$SLURM_CONF" ] && [ -f .slurm/env ]; then . ./.slurm/env; fi; \
	$(PY) -m ablations run all --preset $(PRESET) --executor $(EXECUTOR) $(SEEDS_ARG) \
	  $(if $(filter local,$(EXECUTOR)),$(LOCAL_ARGS)) $(ABLATIONS_ARGS)
	$(PY) -m ablations baselines --preset $(PRESET) $(SEEDS_ARG)
	$(MAKE) report RESULTS=

# RESULTS=reports/reference/tiny-v1/results.csv: the committed reference set's report, without training;
# EXPLORATORY=CSV: an exploratory set's results judged by the same claims, its outcome beside each verdict (at
# tiny, for your own results, the first tiny set: reports/reference/tiny-v1/, claims v1's design seeds 0-6)
RESULTS ?=
EXPLORATORY ?= $(if $(filter tiny,$(PRESET)),$(if $(RESULTS),,reports/reference/tiny-v1/results.csv))
report: $(VENV)/.installed
	$(PY) -m reports $(if $(RESULTS),--results $(RESULTS)) $(if $(CLAIMS),--claims $(CLAIMS)) \
	  $(if $(EXPLORATORY),--exploratory $(EXPLORATORY))

slurm-up:
	bash ablations/slurm/cluster.sh up

slurm-down:
	bash ablations/slurm/cluster.sh down
