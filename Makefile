# The single entry point for developers and CI: `make demo`, `make test`, `make lint`, `make bench`.
VENV ?= .venv
PY := $(VENV)/bin/python
export VIRTUAL_ENV := $(abspath $(VENV))
export CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_BUILD_JOBS ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: build-dev demo lint lint-rust lint-python test test-rust test-python examples bench

$(VENV)/.installed: requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# The extension in release: the profile the Rust tests use too, so dependencies build once.
build-dev: $(VENV)/.installed
	$(VENV)/bin/maturin develop --release -q

# The main job: install the package the way users get it, then run the end-to-end demo.
demo: $(VENV)/.installed
	$(PY) -m pip install -q .
	$(VENV)/bin/inferencekey demo

lint: lint-rust lint-python

lint-rust:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --release -- -D warnings

lint-python: build-dev
	$(VENV)/bin/ruff check python tests examples benches scripts
	$(VENV)/bin/ruff format --check python tests examples benches scripts
	$(VENV)/bin/mypy --strict python tests examples scripts/hot-symbols
	$(PY) -m mypy.stubtest inferencekey._native

test-rust:
	cargo test --release --workspace --exclude inferencekey-py

test-python: build-dev
	$(PY) -m pytest -q

test: test-rust test-python

examples: build-dev
	set -e; for f in examples/*.py; do echo "== $$f"; $(PY) $$f; done
	cargo run --release -q -p inferencekey-core --example quickstart

bench: build-dev
	cargo bench -p inferencekey-core
	$(PY) benches/python/compare.py
