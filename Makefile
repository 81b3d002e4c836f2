# Two commands matter: `make run` (the bot on SQLite) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-browser screenshots check-content bench model clean lock

# constraints.txt pins every dependency (direct and transitive) to the versions the tests ran on;
# refresh it with `make lock` after changing pyproject.toml.
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[test,train]"
	touch $(STAMP)

lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable > constraints.txt

# Development mode is explicit here: without TWILIO_AUTH_TOKEN the webhook
# accepts unsigned requests and says so loudly in the log and /healthz.
# `make run PORT=8080 HOST=0.0.0.0` chooses where it listens (HOST=0.0.0.0 exposes it to your network).
HOST ?= 127.0.0.1
PORT ?= 5000
run: $(STAMP)
	$(BIN)/helpline db upgrade
	HELPLINE_DEV=$${HELPLINE_DEV:-1} $(BIN)/helpline serve --host $(HOST) --port $(PORT)

# Tests run in TEST_WORKERS processes (pytest-xdist; auto = one per core): most of the suite's time is
# spent waiting on servers, browsers and deadlines, not computing. Tests marked `solo` (the fault harness
# and the multi-process test: their own gunicorn held to 5 s deadlines) run afterwards, alone.
# TEST_WORKERS=0 runs everything in one process. Exit status 5 is pytest's "no test selected".
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/helpline check-content
	$(BIN)/pytest -q -n $(TEST_WORKERS) -m "not solo" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/pytest -q -m solo $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The dashboard's browser tests (tests/browser) drive Debian's /usr/bin/chromium with Playwright and
# skip, saying why, when it is missing; HELPLINE_REQUIRE_BROWSER=1 (set by .ci/run) makes that a failure.
test-browser: $(STAMP)
	HELPLINE_REQUIRE_BROWSER=1 $(BIN)/pytest -q tests/browser

# The browser tests again, writing their screenshots into docs/ (the README's pictures) instead of build/.
screenshots: $(STAMP)
	HELPLINE_REQUIRE_BROWSER=1 HELPLINE_SCREENSHOTS=docs $(BIN)/pytest -q tests/browser

check-content: $(STAMP)
	$(BIN)/helpline check-content

# The benchmark suite (about 4 minutes; see bench/RESULTS.md). Uses wrk when installed
# (apt-get install wrk), else a Python load generator. BENCH_ARGS=--quick or --postgres.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Rebuild what triage and topic matching learned (about 15 minutes on 2 cores): the common-word
# list from wordfreq, the crisis model and the topic model. Needs ../shared/data (the real texts).
model: $(STAMP)
	$(BIN)/python tools/build_wordlist.py
	$(BIN)/python tools/train_triage.py
	$(BIN)/python tools/train_topics.py
	$(BIN)/helpline check-content

clean:
	rm -rf $(VENV) instance .pytest_cache build
