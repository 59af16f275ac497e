# The two commands: `make run` and `make test`. Both create or reuse .venv and
# install the project (pinned in pyproject.toml) by themselves.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH  ?=

.PHONY: run test bench catalog migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/socialzone run

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench $(BENCH)

catalog: $(STAMP)
	$(BIN)/socialzone catalog

migrate: $(STAMP)
	$(BIN)/socialzone migrate

clean:
	rm -rf $(VENV) data
