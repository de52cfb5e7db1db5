# Everything a newcomer or CI does. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?= -n auto

.DEFAULT_GOAL := help

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: install
install: $(STAMP) ## create .venv and install the service with its dev tools

.PHONY: run
run: $(STAMP) ## serve on http://127.0.0.1:8000 (embedded PostgreSQL in .data/ unless DATABASE_URL is set)
	$(BIN)/strengths-api serve

.PHONY: test
test: $(STAMP) ## run the whole test suite against a real (embedded) PostgreSQL
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff, and mypy strict on service/ ([tool.mypy] in pyproject.toml)
	$(BIN)/ruff check service migrations tests bench
	$(BIN)/mypy

.PHONY: openapi
openapi: $(STAMP) ## regenerate the committed OpenAPI document
	$(BIN)/strengths-api openapi > openapi/openapi.json

.PHONY: demo
demo: $(STAMP) ## load the demo caseload into the local database
	$(BIN)/strengths-api demo

.PHONY: bench
bench: $(STAMP) ## run the benchmarks (bench/README.md); REPEATS=3 for medians
	$(BIN)/python -m bench.run --repeats $(or $(REPEATS),1)

.PHONY: clean
clean: ## remove the virtualenv and local data
	rm -rf $(VENV) .data
