# tether: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test rust-test lint fmt check miri bench clean

## make test: every Rust test (unit, integration, doc) and, once the extension exists, pytest.
test: rust-test

rust-test:
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc
	$(CARGO) test -p tether-alloc --no-default-features

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

## make bench: criterion suites.
bench:
	$(CARGO) bench -p tether

clean:
	$(CARGO) clean
	rm -rf $(VENV)
