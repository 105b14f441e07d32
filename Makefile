# The studio's two commands: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The sandbox runs as its own process next to the web, as in production.
SANDBOX_PORT ?= $(shell expr $(PORT) + 1)

.PHONY: run test bench lint format install install-test system-test-deps node-test-deps migrate seed clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

migrate: install
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_studio --demo-accounts

## run: install, migrate, seed, then start the web server, the sandbox, a Celery worker and
## beat (a process that dies is reported and started again; Ctrl-C stops them all)
run: seed
	@echo "Studio on http://127.0.0.1:$(PORT)/  (demo passwords: var/demo-accounts.txt)"
	PYTHONUNBUFFERED=1 PORT=$(PORT) SANDBOX_PORT=$(SANDBOX_PORT) \
		SANDBOX_BASE_URL=$${SANDBOX_BASE_URL:-http://127.0.0.1:$(SANDBOX_PORT)/sandbox/v1} \
		$(BIN)/honcho start -f Procfile

## system-test-deps: Debian's Chromium (browser tests), tesseract with the language packs the
## localized frames need (OCR assist), the fonts the OCR bench draws with, and redis-server
## (the broker-outage test starts its own), with apt-get
OCR_LANGUAGES := eng deu fra spa ita por jpn chi-sim
system-test-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v tesseract >/dev/null 2>&1 || missing="$$missing tesseract-ocr"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	for language in $(OCR_LANGUAGES); do \
		[ -e /usr/share/tesseract-ocr/5/tessdata/$$(echo $$language | tr - _).traineddata ] \
			|| missing="$$missing tesseract-ocr-$$language"; \
	done; \
	[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing="$$missing fonts-wqy-microhei"; \
	[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	[ -e /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf ] \
		|| missing="$$missing fonts-liberation"; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

## node-test-deps: the npm packages of package.json into node_modules/ (not committed):
## axe-core, which the browser tests serve to Chromium, and OpenAI's Node SDK for the door
node_modules/.installed: package.json | system-test-deps
	npm install --no-audit --no-fund --no-package-lock --loglevel error
	touch $@
node-test-deps: node_modules/.installed

## test: install what the tests need (Python packages, Chromium, npm packages) and run the whole suite
# Tests keep their SQLite file and filesystem broker apart from a running `make run`.
test: install-test system-test-deps node-test-deps
	VAR_DIR=$${VAR_DIR:-$(CURDIR)/var/test} $(BIN)/python -m pytest $(PYTEST_ARGS)

# The PostgreSQL server the benches make their own databases on (never the suite's `test`),
# and the Redis database their broker uses (never CI's 7).
BENCH_POSTGRES ?= postgres://postgres@127.0.0.1:5432
export BENCH_BROKER_URL ?= redis://127.0.0.1:6379/9

## bench: print figures (medians of repeated runs); the concurrency case takes about a minute,
## the OCR case (500+ labels read by tesseract) several
bench: install-test system-test-deps
	$(BIN)/python -m tests.bench
	$(BIN)/python -m tests.bench.request_path
	BENCH_DATABASE_URL=$(BENCH_POSTGRES)/studio_bench_path $(BIN)/python -m tests.bench.request_path
	BENCH_REQUESTS=1000 $(BIN)/python -m tests.bench.concurrency
	BENCH_DATABASE_URL=$(BENCH_POSTGRES)/studio_bench_flight $(BIN)/python -m tests.bench.concurrency
	$(BIN)/python -m tests.bench.door
	$(BIN)/python -m tests.bench.audit
	$(BIN)/python -m tests.bench.gallery
	$(BIN)/python -m tests.bench.campaigns
	$(BIN)/python -m tests.bench.ocr
	LEDGER_SCHEDULES=10000 VAR_DIR=$(CURDIR)/var/bench $(BIN)/python -m pytest -q -s -p no:randomly \
		tests/test_ledger_machine.py

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) staticfiles var/test.sqlite3
