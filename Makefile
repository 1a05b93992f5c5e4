# The two commands a newcomer needs: `make demo` and `make test`.
# Each bootstraps .venv from pyproject.toml on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck imports unit bench screenshots clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing waylay and its dev tools into $(VENV) (first run only)…"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## The main job: the TUI against the built-in demo sandbox cluster.
## `make demo CLUSTER=current` uses your current kubeconfig context instead.
demo: $(STAMP)
	@$(BIN)/waylay demo $(if $(filter current,$(CLUSTER)),--current-context,)

## The whole suite: lint, format, types, import directions, tests.
test: $(STAMP) check unit

check: lint typecheck imports

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pytest -q tests/bench -s -p no:randomly

screenshots: $(STAMP)
	$(BIN)/python screenshots/make_screenshots.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
