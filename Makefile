# tether: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
VENV ?= .venv
PY := $(VENV)/bin/python

STAMP := $(VENV)/.tether-deps

.PHONY: demo test rust-test py-test ext lint fmt check miri bench bench-py clean

## make demo: build the extension (release) into a venv, then show identity, a measured
## comparison and memory figures.
demo: ext
	$(PY) -m tether.demo

## make test: every Rust test (unit, integration, doc), then pytest against a release build.
test: rust-test py-test

rust-test:
	$(CARGO) test --workspace --exclude tether-py --all-targets
	$(CARGO) test --workspace --exclude tether-py --doc
	$(CARGO) test -p tether-alloc --no-default-features

# The venv and the Python tools come from PyPI; nothing is installed by hand.
$(STAMP): python/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "maturin>=1.8,<2" "pytest>=8" "hypothesis>=6"
	touch $@

## make ext: the extension in release mode, installed into the venv.
ext: $(STAMP)
	cd python && VIRTUAL_ENV=$(abspath $(VENV)) PATH="$(abspath $(VENV))/bin:$$PATH" \
		maturin develop --release --quiet

py-test: ext
	$(PY) -m pytest tests/python -q

## make lint: formatting and clippy, warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p tether-alloc --no-default-features --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## make check: lint, tests, and the slow checkers (Miri with the System inner allocator).
check: lint test miri

miri:
	rustup +nightly component add miri rust-src
	MIRIFLAGS=-Zmiri-strict-provenance $(CARGO) +nightly miri test -p tether-alloc --no-default-features

## make bench: criterion suites and the Python benchmark.
bench: bench-py
	$(CARGO) bench -p tether

bench-py: ext
	$(PY) -m tether.bench

clean:
	$(CARGO) clean
	rm -rf $(VENV)
