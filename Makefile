# retrysafe: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
COMPAT := .venv-compat
COMPAT3 := .venv-fastmcp3
# retrysafe's own dependencies, for the venvs that import it from python/.
RUNTIME_DEPS = $(shell $(PY) -c 'import tomllib; print(" ".join(repr(d) for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export PYO3_PYTHON := $(abspath $(PY))

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# The venv and maturin alone: what the demo needs besides retrysafe's own dependencies.
$(VENV)/.base:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "maturin>=1.5,<2"
	touch $@

# The test, bench and lint extras too (frameworks, SDKs, engines: about 300 packages).
$(VENV)/.installed: $(VENV)/.base pyproject.toml Cargo.toml
	$(VENV)/bin/maturin develop --release -q --extras test,bench,lint,docs
	touch $@

.PHONY: install
install: $(VENV)/.installed ## Create .venv with the test, bench, lint and docs extras, build the extension

.PHONY: build-dev
build-dev: install ## Rebuild the Rust extension into .venv (release mode)
	$(VENV)/bin/maturin develop --release -q

.PHONY: test
test: build-dev ## cargo test, make dist (the wheel checked in 3.10 and 3.13), the compat venvs, then pytest (asyncio + trio; memory, SQLite, a real redis-server, a real 6-node Redis Cluster and a real PostgreSQL)
	cargo test --release -q
	$(MAKE) --no-print-directory dist
	$(MAKE) --no-print-directory compat-run
	scripts/with-chromium.sh scripts/with-redis.sh scripts/with-redis-cluster.sh scripts/with-postgres.sh $(PY) -m pytest -q

# CrewAI pins mcp 1.x, openai 2.x and Pydantic < 2.13, and FastMCP 2.x needs mcp 1.x: they
# get a venv of their own, which imports retrysafe from python/ (the abi3 extension
# build-dev put there).
$(COMPAT)/.installed: pyproject.toml $(VENV)/.installed
	$(PYTHON) -m venv $(COMPAT)
	$(COMPAT)/bin/pip install -q --upgrade pip
	$(COMPAT)/bin/pip install -q $(RUNTIME_DEPS) "crewai>=1.0" "fastmcp>=2.10,<3" "anthropic>=0.40" "pytest>=8"
	touch $@

$(COMPAT3)/.installed: pyproject.toml $(VENV)/.installed
	$(PYTHON) -m venv $(COMPAT3)
	$(COMPAT3)/bin/pip install -q --upgrade pip
	$(COMPAT3)/bin/pip install -q $(RUNTIME_DEPS) "fastmcp>=3,<4" "pytest>=8"
	touch $@

.PHONY: test-compat
test-compat: build-dev compat-run ## CrewAI with FastMCP 2.x (.venv-compat), FastMCP 3.x (.venv-fastmcp3); also part of make test

# The compat venvs' tests on the extension already built (make test built it once).
.PHONY: compat-run
compat-run: $(COMPAT)/.installed $(COMPAT3)/.installed
	CREWAI_DISABLE_TELEMETRY=true OTEL_SDK_DISABLED=true RETRYSAFE_FASTMCP=2 PYTHONPATH=python \
		$(COMPAT)/bin/python -m pytest -q -p no:cacheprovider --confcutdir=tests/compat tests/compat
	RETRYSAFE_FASTMCP=3 PYTHONPATH=python \
		$(COMPAT3)/bin/python -m pytest -q -p no:cacheprovider --confcutdir=tests/compat tests/compat/test_fastmcp_lines.py

.PHONY: test-faults
test-faults: build-dev ## The fault run alone (a fault proxy before a real redis-server and PostgreSQL; also part of make test)
	scripts/with-redis.sh scripts/with-redis-cluster.sh scripts/with-postgres.sh $(PY) -m pytest -q -p no:randomly tests/faults

.PHONY: test-engines
test-engines: build-dev ## The execution engines alone (Temporal's dev server, Celery prefork on Redis, Ray local, DBOS on PostgreSQL; also part of make test)
	scripts/with-redis.sh scripts/with-postgres.sh $(PY) -m pytest -q -p no:randomly tests/engines

.PHONY: test-slow
test-slow: build-dev ## The long property profile and the 1,000,000-number ES6 check
	RETRYSAFE_SLOW=1 HYPOTHESIS_PROFILE=slow scripts/with-redis.sh scripts/with-redis-cluster.sh scripts/with-postgres.sh $(PY) -m pytest -q

.PHONY: crash-hunt
crash-hunt: build-dev ## Adversarial cases against the native encoder, each in its own process, on every Python 3.10-3.13 here
	scripts/crash-hunt.sh

.PHONY: lint
lint: install ## ruff, mypy strict, pyright strict (tests/typing), stubtest of _native, rustfmt, clippy
	$(VENV)/bin/ruff check python tests benches examples scripts
	$(VENV)/bin/ruff format --check python tests benches examples scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/basedpyright
	$(PY) -m mypy.stubtest retrysafe._native
	cargo fmt --check
	cargo clippy --release -q --all-targets -- -D warnings

.PHONY: dist
dist: install ## An sdist and an abi3 manylinux2014 x86_64 wheel in dist/ (zig from PyPI), checked in fresh 3.10 and 3.13 venvs
	rm -rf dist
	$(PIP) install -q "ziglang>=0.13" "auditwheel>=6"
	$(VENV)/bin/maturin sdist -o dist
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/maturin build --release -q --zig \
		--compatibility manylinux2014 --target x86_64-unknown-linux-gnu -o dist
	scripts/check-dist.sh dist/retrysafe-*-cp310-abi3-manylinux*_x86_64.whl

.PHONY: docs
docs: install ## The documentation site (MkDocs Material + mkdocstrings) in target/site, warnings as errors
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

.PHONY: bench
bench: build-dev ## Benchmarks against the anchor libraries (pytest-benchmark)
	mkdir -p .benchmarks
	scripts/with-redis.sh scripts/with-redis-cluster.sh scripts/with-postgres.sh $(PY) -m pytest benches -q -p no:randomly --benchmark-only \
		--benchmark-columns=median,iqr,ops --benchmark-sort=name \
		--benchmark-json=.benchmarks/last.json
	$(PY) benches/ratios.py .benchmarks/last.json

.PHONY: demo
demo: $(VENV)/.base ## The main job: retrysafe demo (builds the extension; installs only what the demo needs)
	$(VENV)/bin/maturin develop --release -q
	$(PY) -m retrysafe demo

.PHONY: clean
clean: ## Remove build products and the venv
	rm -rf $(VENV) $(COMPAT) $(COMPAT3) .venv-hunt target dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
