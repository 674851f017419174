# The two commands of the README: `make run` (service on embedded defaults) and `make test`.
VENV ?= .venv
PYTHON ?= python3
# torch's wheels are large and pinned separately from pyproject's dependencies (a CPU run needs no CUDA).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/grader run

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/bench_answer_check.py
	$(BIN)/python bench/bench_evaluation.py

clean:
	rm -rf var .pytest_cache .ruff_cache
