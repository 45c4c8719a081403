# rnnserve — see README.md. Every target bootstraps .venv/ on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
MODEL ?=
MODEL_REPOSITORY ?= models
HOST ?= 127.0.0.1
PORT ?= 50051
METRICS_PORT ?= 9090
QUANTIZE ?=
TRAIN_ARGS ?=
# make train: pair the context network with this checkpoint's network (or a pair's fallback)
# instead of training one; a copy of models/intent.pt keeps the shipped fallback
FALLBACK ?=
G2P_TRAIN_ARGS ?=
# Language of the model `make data/train/export/parity/sweep` work on: en (default) or zh-CN
# (not LANG: that is the locale). zh-CN trains and exports models/intent-zh{,-stream}.* only
# (20 epochs: docs/model.md, zh-CN recipe; TRAIN_ARGS="--epochs N" overrides).
MODEL_LANG ?= en
MODEL_STEM := models/intent-$(firstword $(subst -, ,$(MODEL_LANG)))

.PHONY: install run serve test test-slow lint format train export parity sweep data proto proto-check bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)  ## create .venv/ with every dependency (only that)

run: serve  ## set up, then serve the models in models/ (intent, intent-stream, ...) on 127.0.0.1:50051

serve: $(STAMP)  ## MODEL=FILE serves one file instead of the repository
	$(PY) -m server $(if $(MODEL),--model $(MODEL),--model-repository $(MODEL_REPOSITORY)) --host $(HOST) --port $(PORT) --metrics-port $(METRICS_PORT)

test: $(STAMP)  ## the test suite (fast; slow tests excluded)
	$(PY) -m pytest -q -m "not slow and not gpu"

test-slow: $(STAMP)  ## fuzz, overload, drain, streams, soak (the container test: make image-test)
	$(PY) -m pytest -q -m "slow and not image"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy modelspec export server client
	$(MAKE) --no-print-directory proto-check

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

data: $(STAMP)
	$(PY) -m export data --language $(MODEL_LANG)

train: $(STAMP)  ## train the default model, its streaming twin and g2p -> models/{intent,intent-stream,g2p}.pt + reports
ifeq ($(MODEL_LANG),en)
ifeq ($(FALLBACK),)
	$(PY) -m export train --no-context --out build/intent-plain.pt --report build/intent-plain.report.json $(TRAIN_ARGS)
endif
	$(PY) -m export train $(TRAIN_ARGS)
	$(PY) -m export.fallback --checkpoint models/intent.pt --plain $(or $(FALLBACK),build/intent-plain.pt) --skip-unsupported
	$(PY) -m export train --no-bidirectional --out models/intent-stream.pt --report models/intent-stream.report.json $(TRAIN_ARGS)
	OMP_NUM_THREADS=1 $(PY) -m export.g2p train $(G2P_TRAIN_ARGS)
	OMP_NUM_THREADS=1 $(PY) -m export.g2p train --init models/g2p.pt --epochs 5 --lr 1e-3 $(G2P_TRAIN_ARGS)
	OMP_NUM_THREADS=1 $(PY) -m export.g2p train --init models/g2p.pt --epochs 26 --lr 1.5e-3 --average 5 $(G2P_TRAIN_ARGS)
	OMP_NUM_THREADS=1 $(PY) -m export.g2p train --init models/g2p.pt --input-feeding --epochs 20 --lr 1e-3 --average 5 $(G2P_TRAIN_ARGS)
else
	$(PY) -m export train --language $(MODEL_LANG) --epochs 20 --out $(MODEL_STEM).pt --report $(MODEL_STEM).report.json $(TRAIN_ARGS)
	$(PY) -m export train --language $(MODEL_LANG) --epochs 20 --no-bidirectional --out $(MODEL_STEM)-stream.pt --report $(MODEL_STEM)-stream.report.json $(TRAIN_ARGS)
endif

export: $(STAMP)  ## export -> models/intent{,-stream}.onnx, models/g2p/1/{encoder,step}.onnx, parity, metadata (QUANTIZE=1: int8 too)
ifeq ($(MODEL_LANG),en)
	$(PY) -m export export $(if $(QUANTIZE),--quantize)
	$(PY) -m export export --checkpoint models/intent-stream.pt --out models/intent-stream.onnx
	$(PY) -m export.g2p export
else
	$(PY) -m export export --checkpoint $(MODEL_STEM).pt --out $(MODEL_STEM).onnx $(if $(QUANTIZE),--quantize)
	$(PY) -m export export --checkpoint $(MODEL_STEM)-stream.pt --out $(MODEL_STEM)-stream.onnx
endif

parity: $(STAMP)
ifeq ($(MODEL_LANG),en)
	$(PY) -m export parity
else
	$(PY) -m export parity --checkpoint $(MODEL_STEM).pt --onnx $(MODEL_STEM).onnx
endif

sweep: $(STAMP)  ## compare every cell type on validation
	$(PY) -m export sweep --language $(MODEL_LANG)

PROTOS := proto/rnnserve/v1/rnnserve.proto proto/rnnserve/kserve/grpc_predict_v2.proto

proto: $(STAMP)  ## regenerate the committed stubs in rnnserve/ from proto/
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. $(PROTOS)

proto-check: $(STAMP)  ## fail when the committed stubs are stale
	rm -rf build/proto-check && mkdir -p build/proto-check
	$(PY) -m grpc_tools.protoc -Iproto --python_out=build/proto-check --grpc_python_out=build/proto-check --pyi_out=build/proto-check $(PROTOS)
	diff -r -x __init__.py -x __pycache__ build/proto-check/rnnserve rnnserve

bench: $(STAMP)  ## benchmarks -> bench/results/{latest.json,summary.md,*.png,generate.{json,md}}
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/generate.py

include mk/deploy.mk

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
