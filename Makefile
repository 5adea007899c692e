# The single entry point for developers and CI.
VENV ?= .venv
PY := $(VENV)/bin/python
export CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_BUILD_JOBS ?= 2

.PHONY: venv build-dev lint test test-rust test-python bench demo

venv:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.8,<2" -e ".[dev]" --no-build-isolation || $(PY) -m pip install -q "maturin>=1.8,<2" pytest pytest-asyncio pytest-timeout hypothesis mypy ruff numpy

# Builds the extension in release (the profile the Rust tests also use) into the venv.
build-dev: venv
	$(VENV)/bin/maturin develop --release -q

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --release -- -D warnings
	$(VENV)/bin/ruff check python tests examples
	$(VENV)/bin/ruff format --check python tests examples
	$(VENV)/bin/mypy --strict python tests examples
	$(VENV)/bin/python -m mypy.stubtest inferencekey._native

test-rust:
	cargo test --release --workspace --exclude inferencekey-py

test-python: build-dev
	$(VENV)/bin/python -m pytest -q

test: test-rust test-python

bench:
	cargo bench -p inferencekey-core
	$(VENV)/bin/python benches/python/compare.py

demo: build-dev
	$(VENV)/bin/inferencekey demo
