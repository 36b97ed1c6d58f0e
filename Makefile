# Every target installs what it needs first: the project virtualenv in .venv and the Debian packages
# the offline speech backend uses. `make demo` and `make test` are the two commands a new user runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
OUT ?= outputs
EXTRAS ?= serve,data,fer,dev,deepspeed
DEBIAN_PACKAGES := espeak-ng
# The tests and the demo run on the built-in tiny model and never touch the Hub.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline
RECIPE ?= recipes/tiny/sft.yaml
RAFT_RECIPE ?= recipes/tiny/raft.yaml
EVAL_RECIPE ?= recipes/tiny/eval.yaml
DATA_CONFIG ?= data_gen/configs/tiny.yaml
# make serve: base model (or merged model folder), optional LoRA adapter folder, port on 127.0.0.1
MODEL ?= evoxtral-tiny
ADAPTER ?=
PORT ?= 8000
# make learning-check: tiny (CPU smoke check) or full (one GPU)
SCALE ?= tiny

.PHONY: help install system-deps test slow_test lint quality demo data sft raft eval serve fer fer-onnx bench learning-check tiny-model clean

help:
	@echo "make demo        offline end-to-end run on the built-in tiny Voxtral (data -> SFT -> RAFT -> eval)"
	@echo "make test        the test suite (CPU, offline)"
	@echo "make install     create $(VENV) and install the project with extras [$(EXTRAS)]"
	@echo "make data | sft | raft | eval | serve | fer | fer-onnx | bench | learning-check | lint"

$(VENV)/.installed: setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages:$$missing"; \
	    (apt-get install -y -qq $$missing >/dev/null 2>&1 || (apt-get update -qq >/dev/null && apt-get install -y -qq $$missing >/dev/null)); \
	  else \
	    echo "Missing Debian packages:$$missing. Install them with: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	fi

install: $(VENV)/.installed system-deps

tiny-model: install
	$(OFFLINE) $(PY) -m evoxtral.tiny

test: install
	$(OFFLINE) $(PY) -m pytest -q tests

# Offline by default (espeak-ng); DATA_CONFIG=data_gen/configs/evoxtral.yaml uses ElevenLabs v3 (ELEVENLABS_API_KEY).
data: install
	$(OFFLINE) $(PY) data_gen/generate.py --config $(DATA_CONFIG)

slow_test: install
	$(OFFLINE) $(PY) -m pytest -q -m slow tests

lint: install
	$(PY) -m ruff check evoxtral recipes data_gen metrics serve bench tests
	$(PY) -m ruff format --check evoxtral recipes data_gen metrics serve bench tests

quality: lint

# SFT with $(RECIPE) (default: the offline tiny recipe, which first makes its data with `make data`; tiny recipes
# run offline, others may download their model and data).
# On CPU accelerate needs no config; on GPUs add ACCELERATE_CONFIG=accelerate_configs/<single_gpu|multi_gpu|...>.yaml
ACCELERATE_CONFIG ?=
sft: install
	@if [ "$(RECIPE)" = "recipes/tiny/sft.yaml" ] && [ ! -d $(OUT)/data/tiny/dataset ]; then $(MAKE) data; fi
	$(if $(filter recipes/tiny/%,$(RECIPE)),$(OFFLINE)) $(VENV)/bin/accelerate launch $(if $(ACCELERATE_CONFIG),--config_file $(ACCELERATE_CONFIG),--num_processes 1) \
		recipes/sft.py --config $(RECIPE)

serve: install
	$(OFFLINE) $(PY) -m serve --model $(MODEL) $(if $(ADAPTER),--adapter $(ADAPTER)) --port $(PORT)

# Evoxtral-Bench on $(EVAL_RECIPE): predictions, metrics.json, report.md (Tables 2 and 3) and per_tag_f1.png.
eval: install
	$(OFFLINE) $(PY) recipes/eval.py --config $(EVAL_RECIPE)

# Does a model trained with these recipes hear the tags? data -> model -> SFT -> RAFT -> eval with the
# mismatched-audio control, then results.md / results.json / learning_check.png in outputs/learning_check/$(SCALE).
# SCALE=tiny: a CPU smoke check of the chain (minutes); SCALE=full: the experiment on one GPU.
learning-check: install
	$(OFFLINE) $(PY) recipes/learning_check.py --scale $(SCALE)

# Speed of the shared cores, each against a same-run baseline.
bench: install
	$(OFFLINE) $(PY) bench/metrics_speed.py

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
