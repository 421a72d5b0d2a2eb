# The front door: `make demo` and `make test` install what they need themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
NODE_STAMP := node_modules/.installed
# checkov pins boto3 far below requirements.txt, so it gets a venv of its own.
CHECKOV_STAMP := .venv-checkov/.requirements
CDK := npx --no-install cdk
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install demo test lint synth deploy destroy bench clean

help:
	@echo "make demo     train a churn model locally on the bundled data and show its metrics"
	@echo "make test     linters, security gates and all tests (what CI runs)"
	@echo "make lint     ruff + cfn-lint on the synthesized template (cdk-nag runs during synth)"
	@echo "make synth    npx cdk synth (offline)"
	@echo "make deploy   npx cdk deploy (needs AWS credentials)"
	@echo "make destroy  npx cdk destroy"
	@echo "make bench    run the benchmarks in bench/"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): requirements.txt pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv --clear .venv-checkov
	.venv-checkov/bin/pip install --quiet -r requirements-checkov.txt
	cp requirements-checkov.txt $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(DEV_STAMP) $(NODE_STAMP) $(CHECKOV_STAMP)

demo: $(RUNTIME_STAMP)
	$(PY) -m pipeline run --local

test: $(DEV_STAMP) $(NODE_STAMP) $(CHECKOV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: $(DEV_STAMP) $(NODE_STAMP)
	$(PY) -m ruff check .
	rm -rf cdk.out && $(CDK) synth --quiet
	$(VENV)/bin/cfn-lint cdk.out/*.template.json

synth: $(RUNTIME_STAMP) $(NODE_STAMP)
	$(CDK) synth

deploy: $(RUNTIME_STAMP) $(NODE_STAMP)
	$(CDK) deploy

destroy: $(RUNTIME_STAMP) $(NODE_STAMP)
	$(CDK) destroy

bench:
	$(MAKE) -C bench ingest
	$(MAKE) -C bench pipeline

clean:
	rm -rf cdk.out .local .pytest_cache .ruff_cache .venv-checkov
