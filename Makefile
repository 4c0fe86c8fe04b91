# Two commands are all a fresh machine needs: `make demo` and `make test`.
# Both create (or reuse) .venv and install dyad with every extra into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dyad-installed

.PHONY: install demo test lint typecheck unit clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and exactly 2.13.0: the machines carry its CPU wheel; anything else pulls CUDA.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# llama-cpp-python compiles llama.cpp here the first time; its multimodal library (mtmd, for image
	# models) is left out: dyad runs text models only, and it was a quarter of the compile (332 -> 251 s).
	CMAKE_ARGS="$$CMAKE_ARGS -DLLAVA_BUILD=OFF" $(BIN)/python -m pip install --quiet -e '.[all,dev]'
	# Smart Turn v3.2 (the end-of-turn model) ships inside pipecat-ai; only its ONNX file is used, and
	# pipecat-ai's own pins (protobuf<7) clash with livekit's, so it comes without its dependencies.
	$(BIN)/python -m pip install --quiet --no-deps pipecat-ai==1.14.0
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/dyad serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the layer and no-cycle contracts in pyproject.toml

typecheck: install
	$(BIN)/mypy agent avatar_core integrations

unit: install
	$(BIN)/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
