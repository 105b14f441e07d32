# The studio's two commands: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test bench lint format install install-test system-test-deps migrate seed clean

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

## run: install, migrate, seed, then start the web server and a Celery worker (Ctrl-C stops both)
run: seed
	@echo "Studio on http://127.0.0.1:$(PORT)/  (demo passwords: var/demo-accounts.txt)"
	PORT=$(PORT) SANDBOX_BASE_URL=$${SANDBOX_BASE_URL:-http://127.0.0.1:$(PORT)/sandbox/v1} \
		$(BIN)/honcho start -f Procfile

## system-test-deps: Debian's Chromium (browser tests), tesseract with the language packs the
## localized frames need (OCR assist) and the fonts the OCR bench draws with, with apt-get
OCR_LANGUAGES := eng deu fra spa ita por jpn chi-sim
system-test-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v tesseract >/dev/null 2>&1 || missing="$$missing tesseract-ocr"; \
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

## test: install what the tests need (Python packages and Chromium) and run the whole suite
# Tests keep their SQLite file and filesystem broker apart from a running `make run`.
test: install-test system-test-deps
	VAR_DIR=$${VAR_DIR:-$(CURDIR)/var/test} $(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: print figures (medians of repeated runs); the concurrency case takes about a minute,
## the OCR case (500+ labels read by tesseract) several
bench: install-test system-test-deps
	$(BIN)/python -m tests.bench
	$(BIN)/python -m tests.bench.concurrency
	$(BIN)/python -m tests.bench.audit
	$(BIN)/python -m tests.bench.ocr

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) staticfiles var/test.sqlite3
