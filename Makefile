# parcelwatch — the verbs a person types. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     ?= .venv
PY       ?= python3
N        ?= 200
DAYS     ?= 6
SEED     ?= 7
export MOTO_SERVER := $(CURDIR)/$(VENV)/bin/moto_server
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# Pinned local-stack tools (PyPI): moto serves DynamoDB+Streams/SQS/SNS, cfn-lint checks the
# template, cargo-lambda runs and invokes the functions like Lambda does.
PIP_PINS := "moto[server]==5.2.5" "cfn-lint==1.58.*" "cargo-lambda==1.9.2"

.PHONY: help setup build test unit integration lint fmt template demo stack sandbox invoke-scheduler clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.installed: Makefile
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(PIP_PINS)
	touch $@

setup: $(VENV)/.installed ## install the pinned local stack (moto, cfn-lint, cargo-lambda) into .venv

build: ## debug build of every crate
	cargo build --workspace --all-targets

test: setup template ## every test: unit, handler, sandbox, local-stack integration; cfn-lint
	cargo test --workspace --all-targets -- --test-threads=4

unit: ## the fast tests only (no moto)
	cargo test --workspace --lib --bins

lint: setup template ## rustfmt, clippy -D warnings, cfn-lint
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

template: setup ## check template.yaml offline
	$(VENV)/bin/cfn-lint template.yaml

fmt: ## format the code
	cargo fmt --all

demo: setup ## the whole product on the local stack: N shipments (default 200) over DAYS simulated days
	cargo run --quiet -p parcelwatch-local --bin demo -- --shipments $(N) --days $(DAYS) --seed $(SEED)

stack: setup ## start moto + resources + carrier sandbox and print the env for cargo lambda
	cargo run --quiet -p parcelwatch-local --bin stack

clean: ## remove build output and the local venv
	cargo clean
	rm -rf $(VENV) .local
