# Two commands do all the set-up on a fresh machine:
#   make demo   installs, then tags example text with the shipped model
#   make test   installs with the test references, then runs the tests
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TEXT ?= Prime Minister Gordon Brown met U.S. President Barack Obama in London on Tuesday to discuss the Afghan war.

.PHONY: install install-dev demo test bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# Exactly this torch: the CPU wheel (a looser range can pull a multi-GB CUDA build).
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e .
	touch $@

# The optional extras too (spacy, tensorboard), so their tests run; torch named again so that
# no dependency's resolution can replace the pinned CPU build.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -e '.[dev,serve,spacy,tensorboard,ray]' torch==2.13.0
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/nerbilstm predict "$(TEXT)"
	$(VENV)/bin/nerbilstm predict --output-format json "$(TEXT)"

test: install-dev
	$(PY) -m pytest -q

# Speed against torch.nn.LSTM + pytorch-crf (the dev extra); the JSON is the last line of output.
# Data: $$NERBILSTM_DATA, else synthetic sentences.
bench: install-dev
	$(PY) benchmarks/speed.py --threads 2

clean:
	rm -rf $(VENV) .ci-venv .pytest_cache .hypothesis
