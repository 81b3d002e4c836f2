# Two commands matter: `make run` (the bot on SQLite) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check-content bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

# Development mode is explicit here: without TWILIO_AUTH_TOKEN the webhook
# accepts unsigned requests and says so loudly in the log and /healthz.
run: $(STAMP)
	$(BIN)/helpline db upgrade
	HELPLINE_DEV=$${HELPLINE_DEV:-1} $(BIN)/helpline serve

test: $(STAMP)
	$(BIN)/helpline check-content
	$(BIN)/pytest -q $(PYTEST_ARGS)

check-content: $(STAMP)
	$(BIN)/helpline check-content

clean:
	rm -rf $(VENV) instance .pytest_cache
