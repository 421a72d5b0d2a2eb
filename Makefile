# The front door: `make demo` and `make test` install what they need themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
NODE_STAMP := node_modules/.installed
# checkov pins boto3 far below requirements.txt, so it gets a venv of its own.
CHECKOV_STAMP := .venv-checkov/.installed
CDK := npx --no-install cdk
# The installer itself is pinned too; the *.lock files (uv pip compile --generate-hashes) pin
# everything it installs. `make lock` rewrites them from the requirements*.txt files.
PIP_VERSION := 26.3
LOCK := $(VENV)/bin/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	--custom-compile-command "make lock"
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install demo cdnow test lint synth deploy destroy bench lock clean

help:
	@echo "make demo     train a churn model locally on the bundled data and show its metrics"
	@echo "make cdnow    fetch the CDNOW purchase log and run its three feature groups locally"
	@echo "make test     linters, security gates and all tests (CI runs it, then make synth)"
	@echo "make lint     ruff + cfn-lint on the synthesized template (cdk-nag runs during synth)"
	@echo "make synth    npx cdk synth (offline)"
	@echo "make deploy   npx cdk deploy (needs AWS credentials)"
	@echo "make destroy  npx cdk destroy"
	@echo "make bench    run the benchmarks in bench/"
	@echo "make lock     re-pin every dependency (after editing a requirements*.txt)"
	@echo "make install  the venvs and the pinned CDK CLI (the targets above make what they need)"
	@echo "make clean    remove cdk.out, the local workspace .local and the caches"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==$(PIP_VERSION)

$(RUNTIME_STAMP): requirements.lock pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.lock
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	touch $@

$(CHECKOV_STAMP): requirements-checkov.lock
	$(PYTHON) -m venv --clear .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet pip==$(PIP_VERSION)
	.venv-checkov/bin/python -m pip install --quiet --require-hashes -r requirements-checkov.lock
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(DEV_STAMP) $(NODE_STAMP) $(CHECKOV_STAMP)

demo: $(RUNTIME_STAMP)
	$(PY) -m pipeline run --local

# CDNOW: not bundled; the pinned wheel that ships it is downloaded once (data/README.md).
CDNOW_DATA := .local/data/CDNOW_master.txt
CDNOW_WHEEL := .local/downloads/Lifetimes-0.11.3-py3-none-any.whl

$(CDNOW_WHEEL): data/cdnow-source.lock | $(VENV)/bin/python
	$(PY) -m pip download --quiet --no-deps --require-hashes -r data/cdnow-source.lock -d $(@D)
	touch $@

$(CDNOW_DATA): $(CDNOW_WHEEL)
	mkdir -p $(@D)
	$(PY) -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
		$< lifetimes/datasets/CDNOW_master.txt > $@.part
	mv $@.part $@

cdnow: $(RUNTIME_STAMP) $(CDNOW_DATA)
	$(PY) -m pipeline run --local --spec data/cdnow.spec.json --data $(CDNOW_DATA)

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

# The runtime lock first; the dev lock keeps every runtime package at the runtime lock's version.
lock: $(DEV_STAMP)
	$(LOCK) requirements.txt -o requirements.lock
	$(LOCK) requirements-dev.txt -c requirements.lock -o requirements-dev.lock
	$(LOCK) requirements-checkov.txt -o requirements-checkov.lock
	$(LOCK) bench/requirements-seed.txt -o bench/requirements-seed.lock
	$(LOCK) bench/requirements-peer.txt -o bench/requirements-peer.lock

clean:
	rm -rf cdk.out .local .pytest_cache .ruff_cache .venv-checkov
