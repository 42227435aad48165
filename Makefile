# tether: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
VENV ?= .venv
PY := $(VENV)/bin/python

STAMP := $(VENV)/.tether-deps

.PHONY: demo test test-matrix test-ft rust-test py-test ext lint fmt check miri miri-runtime loom loom-broken asan asan-py fuzz bench bench-py bench-matrix bench-dropin profile clean

## make demo: build the extension (release) into a venv, then show identity, a measured
## comparison and memory figures.
demo: ext
	$(PY) -m tether.demo

## make test: every Rust test (unit, integration, doc), then pytest against a release build.
test: rust-test py-test

## make test-matrix: the pytest suite against a wheel of tether on CPython 3.11 (python3), on
## each of MATRIX_PYTHONS, and on a free-threaded 3.13t (built once from Debian's sources into a
## per-user cache: tests/ft_python.sh), each wheel installed into a clean venv and tested from
## outside the source tree, and `pip install ./python` into another (tests/matrix.sh;
## interpreters that are missing are skipped and reported).
test-matrix:
	ft=$$($(SHELL) tests/ft_python.sh) && $(SHELL) tests/matrix.sh python3 $(MATRIX_PYTHONS) "$$ft"

## make test-ft: the free-threaded build alone: 3.13t (built or reused), its wheel in a clean
## venv, the whole pytest suite there, including tests/python/test_free_threading.py's stress
## runs (8 and 16 threads), with the GIL still off after import.
test-ft:
	ft=$$($(SHELL) tests/ft_python.sh) && $(SHELL) tests/matrix.sh "$$ft"

rust-test:
	$(CARGO) test --workspace --exclude tether-py --all-targets
	$(CARGO) test --workspace --exclude tether-py --doc
	$(CARGO) test -p tether-alloc --no-default-features
	$(CARGO) test -p tether-runtime --no-default-features --features stats
	$(CARGO) test -p tether-runtime --features narrow-header

# The venv and the Python tools come from PyPI; nothing is installed by hand.
$(STAMP): python/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "maturin>=1.8,<2" "pytest>=8" "hypothesis>=6" "mypy>=1.10"
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
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet

fmt:
	$(CARGO) fmt --all

## make check: lint, tests, and the slow checkers (Miri with the System inner allocator).
check: lint test test-matrix test-ft miri miri-runtime loom loom-broken asan asan-py fuzz

# Miri runs tether-alloc on the System inner allocator, with strict provenance. Stacked Borrows
# (Miri's default model) checks the unit tests and every integration test but the GlobalAlloc
# binary; that binary and the doctests run under Tree Borrows: a std (or allocator_api2) `Box`
# hands `dealloc` a pointer whose Stacked-Borrows provenance covers only the boxed value, so the
# allocator's read of the header before it is flagged under that model alone
# (rust-lang/unsafe-code-guidelines#402).
MIRI_SB_TESTS := $(filter-out global_alloc,$(basename $(notdir $(wildcard alloc/tests/*.rs))))

miri:
	rustup +nightly component add miri rust-src
	MIRIFLAGS=-Zmiri-strict-provenance $(CARGO) +nightly miri test -p tether-alloc \
		--no-default-features --lib $(addprefix --test ,$(MIRI_SB_TESTS))
	MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-tree-borrows" $(CARGO) +nightly miri test \
		-p tether-alloc --no-default-features --test global_alloc
	MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-tree-borrows" $(CARGO) +nightly miri test \
		-p tether-alloc --no-default-features --doc

# Miri runs tether-runtime (objects, tie machine, records; unit, integration and doc tests) on
# the System inner allocator, strict provenance, Stacked Borrows.
miri-runtime:
	rustup +nightly component add miri rust-src
	MIRIFLAGS=-Zmiri-strict-provenance $(CARGO) +nightly miri test -p tether-runtime --no-default-features --features stats

# loom models of the reference counts and the tie transitions (runtime/tests/loom.rs), in their
# own target dir (RUSTFLAGS changes every crate's build).
LOOM_TARGET ?= target/loom
LOOM_MAX_PREEMPTIONS ?= 4
loom:
	RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=$(LOOM_MAX_PREEMPTIONS) CARGO_TARGET_DIR=$(LOOM_TARGET) \
		$(CARGO) test -p tether-runtime --test loom --release

# The models can fail: each deliberately broken protocol builds, and its loom run must fail.
loom-broken:
	@for v in release_relaxed tie_no_cas finalize_check_then_act serial_check_then_act locked_no_exclusion host_incref_any kept_unclaimed doom_unchecked; do \
		flags="--cfg loom --cfg tether_loom_broken=\"$$v\""; \
		RUSTFLAGS="$$flags" CARGO_TARGET_DIR=$(LOOM_TARGET)-broken \
			$(CARGO) test -q -p tether-runtime --test loom --release --no-run || exit 1; \
		if RUSTFLAGS="$$flags" LOOM_MAX_PREEMPTIONS=$(LOOM_MAX_PREEMPTIONS) CARGO_TARGET_DIR=$(LOOM_TARGET)-broken \
			$(CARGO) test -q -p tether-runtime --test loom --release >/dev/null 2>&1; then \
			echo "loom-broken: $$v was NOT caught"; exit 1; fi; \
		echo "loom-broken: $$v caught"; \
	done

## make asan / asan-py / fuzz: AddressSanitizer and fuzzing (docs/hardening.md). All on nightly
## and the System inner allocator (ASan cannot see inside mimalloc), each in a target dir (and
## venv) of its own, so the normal build and python/tether/_native*.so are left alone.
ASAN_TARGET ?= target/asan
ASAN_TRIPLE ?= x86_64-unknown-linux-gnu
# allocator_may_return_null=1: the suites ask for impossible sizes on purpose and expect
# null/AllocError, which ASan would otherwise turn into a fatal allocation-size-too-big report.
ASAN_ENV := RUSTFLAGS=-Zsanitizer=address RUSTDOCFLAGS=-Zsanitizer=address \
	ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 CARGO_TARGET_DIR=$(ASAN_TARGET)

# The Rust suites of tether-alloc and tether-runtime (unit, integration, doc), std rebuilt with
# ASan (-Zbuild-std), leak checking on.
asan:
	rustup +nightly component add rust-src
	$(ASAN_ENV) $(CARGO) +nightly test -Zbuild-std --target $(ASAN_TRIPLE) -p tether-alloc --no-default-features
	$(ASAN_ENV) $(CARGO) +nightly test -Zbuild-std --target $(ASAN_TRIPLE) -p tether-runtime --no-default-features --features stats

# pytest against an ASan build of the extension (System backend) in its own venv: the wheel is
# built with maturin and pip-installed there. CPython is not instrumented: gcc's libasan is
# preloaded and PYTHONMALLOC=malloc sends every Python allocation through it. detect_leaks=0:
# tether-py leaks the FieldDefs of collected classes by design, and LSan's tracer crashes now and
# then at interpreter exit (docs/hardening.md). The soak tests assert RSS
# stays flat, which ASan's quarantine of freed blocks defeats, so they run in a second pass with
# the quarantine off (overflow checks stay on).
ASAN_VENV ?= .venv-asan
ASAN_PY_TARGET ?= target/asan-py
ASAN_PY := $(ASAN_VENV)/bin/python
ASAN_STAMP := $(ASAN_VENV)/.tether-deps
ASAN_PY_OPTIONS := detect_leaks=0:allocator_may_return_null=1
ASAN_PY_RUN = LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" PYTHONMALLOC=malloc

$(ASAN_STAMP): python/pyproject.toml
	python3 -m venv $(ASAN_VENV)
	$(ASAN_PY) -m pip install -q --disable-pip-version-check "maturin>=1.8,<2" "pytest>=8" "hypothesis>=6" "mypy>=1.10"
	touch $@

asan-py: $(ASAN_STAMP)
	rustup +nightly component add rust-src
	@test -f "$$(gcc -print-file-name=libasan.so)" || { echo "asan-py: gcc's libasan.so not found"; exit 1; }
	rm -rf $(ASAN_PY_TARGET)/wheels
	cd python && RUSTUP_TOOLCHAIN=nightly RUSTFLAGS=-Zsanitizer=address \
		CARGO_TARGET_DIR=$(abspath $(ASAN_PY_TARGET)) $(abspath $(ASAN_VENV))/bin/maturin build \
		--release --quiet --compatibility linux --no-default-features --features extension-module \
		--target $(ASAN_TRIPLE) -Zbuild-std -i $(abspath $(ASAN_PY)) -o $(abspath $(ASAN_PY_TARGET))/wheels
	$(ASAN_PY) -m pip install -q --disable-pip-version-check --force-reinstall --no-deps \
		$(ASAN_PY_TARGET)/wheels/tether-*.whl
	$(ASAN_PY_RUN) ASAN_OPTIONS=$(ASAN_PY_OPTIONS) \
		$(ASAN_PY) -m pytest tests/python -q -p no:cacheprovider --ignore=tests/python/test_soak.py
	$(ASAN_PY_RUN) ASAN_OPTIONS=$(ASAN_PY_OPTIONS):quarantine_size_mb=0:thread_local_quarantine_size_kb=0 \
		$(ASAN_PY) -m pytest tests/python/test_soak.py -q -p no:cacheprovider

# Short runs of the cargo-fuzz targets (fuzz/, a crate outside the workspace; ASan on, System
# inner allocator). FUZZ_TIME=600 for the long runs recorded in docs/hardening.md.
FUZZ_TIME ?= 30
FUZZ_TARGETS := alloc_ops tie_ops
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		$(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_TIME) -print_final_stats=1 || exit 1; \
	done

## make bench-dropin: the drop-in workload (binary trees, serde_json, HashMap churn:
## alloc/examples/dropin/workload.rs) under five global allocators (raw mimalloc, System,
## HeaderAlloc Wide / Narrow / Bare on mimalloc), release builds run alternating; prints the
## medians of CPU and wall time and the ratios to mimalloc and to System. Run it on a quiet
## machine (the load average is printed each round).
DROPIN_ROUNDS ?= 7
DROPIN_BINS := dropin_mimalloc dropin_system dropin_wide dropin_narrow dropin_bare
bench-dropin:
	$(CARGO) build --release --quiet -p tether-alloc $(addprefix --example ,$(DROPIN_BINS))
	python3 alloc/examples/dropin/run.py --rounds $(DROPIN_ROUNDS) \
		--dir $${CARGO_TARGET_DIR:-target}/release/examples $(DROPIN_BINS)

## make bench: criterion suites and the Python benchmark (time and memory against a __slots__
## class, with the scaling sweep), then the chart docs/benchmarks.png drawn from those results.
bench: bench-py
	$(CARGO) bench -p tether
	$(PY) -m pip install -q --disable-pip-version-check matplotlib
	$(PY) benches/plot_bench.py target/bench/python.json docs/benchmarks.png

bench-py: ext
	mkdir -p target/bench
	$(PY) -m tether.bench --scaling --json target/bench/python.json

## make bench-matrix: `python -m tether.bench --quick` on the venv's CPython and on each of
## MATRIX_PYTHONS, the extension built (release) for each into a venv and a cargo target dir of
## its own under target/py<X.Y>/ (benches/matrix.sh).
MATRIX_PYTHONS ?= $(HOME)/.pyenv/versions/3.12.1/bin/python3.12 $(HOME)/.pyenv/versions/3.13.0/bin/python3.13
bench-matrix: ext
	$(SHELL) benches/matrix.sh $(PY) $(MATRIX_PYTHONS)

## make profile: dhat heap profiles (profiles/README.md). The Rust workloads run natively in
## release mode; the Python churn runs on a dhat build of the extension (feature dhat-heap) in
## its own venv and target dir, so the normal build is left alone. Writes profiles/out/*.json.
PROFILE_VENV ?= .venv-profile
PROFILE_TARGET ?= target/profile
PROFILE_PY := $(PROFILE_VENV)/bin/python
PROFILE_STAMP := $(PROFILE_VENV)/.tether-deps

$(PROFILE_STAMP): python/pyproject.toml
	python3 -m venv $(PROFILE_VENV)
	$(PROFILE_PY) -m pip install -q --disable-pip-version-check "maturin>=1.8,<2"
	touch $@

profiles/out:
	mkdir -p $@

profile: $(PROFILE_STAMP) | profiles/out
	CARGO_TARGET_DIR=$(PROFILE_TARGET) $(CARGO) test --release -p tether-profiles --features global-inner --test no_leaks
	CARGO_TARGET_DIR=$(PROFILE_TARGET) $(CARGO) build --release -p tether-profiles --features global-inner --bins
	$(PROFILE_TARGET)/release/tree
	$(PROFILE_TARGET)/release/mix
	rm -rf $(PROFILE_TARGET)/wheels
	cd python && CARGO_TARGET_DIR=$(abspath $(PROFILE_TARGET)) \
		$(abspath $(PROFILE_VENV))/bin/maturin build --release --quiet --compatibility linux --features dhat-heap \
		-i $(abspath $(PROFILE_PY)) -o $(abspath $(PROFILE_TARGET))/wheels
	$(PROFILE_PY) -m pip install -q --disable-pip-version-check --force-reinstall --no-deps \
		$(PROFILE_TARGET)/wheels/tether-*.whl
	$(PROFILE_PY) profiles/churn.py

clean:
	$(CARGO) clean
	rm -rf $(VENV) .venv-profile .venv-asan profiles/out fuzz/target
