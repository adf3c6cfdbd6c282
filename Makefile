# The two commands a newcomer needs: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

IAC_VENV := .venv-iac

.PHONY: setup demo serve test test-unit test-multirun lint lock iac bench clean

CHROMIUM := /usr/bin/chromium

setup: $(VENV)/.installed node_modules/.installed $(CHROMIUM)

# Runtime packages from the hashed lock (requirements.lock, compiled from requirements.in: the
# command is in its header; requirements.txt, what the Functions build reads, installs the lock),
# then the development tools.
$(VENV)/.installed: requirements.txt requirements.lock requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The console's browser tests drive Debian's Chromium through Playwright for Python (pinned in
# requirements-dev.txt, with executable_path): `playwright install`, which downloads a browser of
# its own, is never run. apt installs it as root (CI) or with sudo; elsewhere the note says how,
# and the browser tests fail saying the same.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "note: $(CHROMIUM) is missing; the browser tests need it: sudo apt-get install chromium"; \
	fi

# ARGS=--json: the whole run report, the ExportRun event and the preview as one JSON document.
demo: setup
	$(BIN)/python -m tools.demo $(ARGS)

# The app's HTTP routes and queue worker on the stand-ins and sample export of `make demo`, at
# http://127.0.0.1:7071/api/... with a printed local function key; the console is /api/console.
# Ctrl-C stops it. ARGS=--port=N for another port.
serve: setup
	$(BIN)/python -m tools.devserver --local $(ARGS)

# Figures, not a test: the export against a minimal streaming loop (bench/run.py; PROFILES=N).
PROFILES ?= 300000
bench: setup
	$(BIN)/python -m bench.run --profiles $(PROFILES)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy
	$(BIN)/lint-imports --no-cache

# checkov lives in its own venv: it pins versions of packages the app also uses.
$(IAC_VENV)/.installed: requirements-iac.txt
	$(PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(IAC_VENV)/bin/python -m pip install --quiet -r requirements-iac.txt
	touch $@

# Static checks of infra/ (skips and their reasons: infra/.checkov.yaml).
iac: $(IAC_VENV)/.installed
	$(IAC_VENV)/bin/checkov -d infra --framework bicep --skip-download --compact --quiet

# Tests start their own Azurite, SendGrid sandbox and Key Vault stand-in on free loopback ports.
test: lint iac
	$(BIN)/python -m pytest -q

# The fast loop: tests/unit only (no stand-ins, no Node.js needed), a few seconds.
test-unit: $(VENV)/.installed
	$(BIN)/python -m pytest -q tests/unit

# Many seeds of the randomised multi-run test (make test runs two a mode): MULTIRUN_SEEDS=N.
MULTIRUN_SEEDS ?= 40
test-multirun: setup
	MULTIRUN_SEEDS=$(MULTIRUN_SEEDS) $(BIN)/python -m pytest -q tests/integration/test_multirun.py

# Recompile the hashed lock from requirements.in (pip-tools, pinned in requirements-dev.txt).
lock: $(VENV)/.installed
	$(BIN)/pip-compile --generate-hashes --no-emit-find-links --no-emit-index-url --output-file=requirements.lock \
		--pip-args='--isolated' --strip-extras requirements.in

clean:
	rm -rf $(VENV) $(IAC_VENV) node_modules .pytest_cache .ruff_cache
