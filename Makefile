# The two commands a newcomer needs: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/python -m tools.demo

lint: setup
	$(BIN)/ruff check .

# Tests start their own Azurite, SendGrid sandbox and Key Vault stand-in on free loopback ports.
test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
