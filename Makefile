# `make demo` and `make test` do all their own set-up on a fresh machine.
PYTHON ?= $(shell .ci/find-python)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml images/constraints.txt | cksum | cut -d' ' -f1)

.PHONY: help venv servers image-tools images lint test test-fast demo bench clean

help:
	@echo "make demo   - set up and run the whole system locally, compare against ground truth"
	@echo "make test   - set up (venv, Prometheus, PostgreSQL, buildah) and run lint and the whole suite"
	@echo "make lint   - ruff, mypy and the import layering contracts"
	@echo "make bench  - run the benchmarks and print their figures"
	@echo "make images - build the agent and collector images with buildah, print their sizes"

$(STAMP): pyproject.toml images/constraints.txt
	@test -n "$(PYTHON)" || (echo "Python 3.12+ is required" && exit 1)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -c images/constraints.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

servers:
	.ci/install-servers

# buildah and mmdebstrap, for the image tests (tests/integration/images) and `make images`
image-tools:
	images/install-tools

images: venv image-tools
	$(BIN)/python images/build.py images

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common agent collector
	$(BIN)/lint-imports

test: venv servers image-tools lint
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=600 tests

test-fast: venv
	$(BIN)/python -m pytest -q -x -p no:cacheprovider tests/unit

demo: venv
	$(BIN)/python -m demo.run

bench: venv
	WITH_LOAD_TOOLS=1 .ci/install-servers
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.agent
	$(BIN)/python -m bench.forwarding
	$(BIN)/python -m bench.reconciler

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.db *.db-wal *.db-shm
