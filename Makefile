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

# ---- running the functions like Lambda does, against `make stack` (see README "Invoking")
WATCH_PORT   ?= 9001
MOTO_PORT    ?= 5005
SANDBOX_PORT ?= 9100
STACK_ENV    := .local/stack.env

.PHONY: watch invoke dlq sms

watch: setup ## serve the functions with cargo lambda watch on :9001, with the env `make stack` wrote
	@test -f $(STACK_ENV) || { echo "no $(STACK_ENV): start 'make stack' in another terminal first" >&2; exit 1; }
	set -a && source $(STACK_ENV) && set +a && cargo lambda watch -A 127.0.0.1 -P $(WATCH_PORT)

invoke: ## invoke a function under `make watch`: make invoke FN=tracker EVENT=events/tracker/batch.json
	@test -n "$(FN)" && test -n "$(EVENT)" || { echo "usage: make invoke FN=tracker EVENT=events/tracker/batch.json" >&2; exit 2; }
	cargo lambda invoke $(FN) -A 127.0.0.1 -P $(WATCH_PORT) --data-file $(EVENT)

invoke-scheduler: ## run the scheduler under `make watch` as of now (the sample event, time = now)
	@mkdir -p .local
	sed -E 's/"time": "[^"]*"/"time": "'"$$(date -u +%Y-%m-%dT%H:%M:%SZ)"'"/' events/scheduler/scheduled.json > .local/scheduled-now.json
	cargo lambda invoke scheduler -A 127.0.0.1 -P $(WATCH_PORT) --data-file .local/scheduled-now.json

dlq: ## peek at the tracking DLQ of `make stack` (messages stay in the queue)
	@test -f $(STACK_ENV) || { echo "no $(STACK_ENV): start 'make stack' first" >&2; exit 1; }
	@source $(STACK_ENV) && curl -s "$$AWS_ENDPOINT_URL/" \
	  --data-urlencode "QueueUrl=$$TRACKING_DLQ_URL" -d Action=ReceiveMessage \
	  -d MaxNumberOfMessages=10 -d VisibilityTimeout=0 -d MessageAttributeName.1=All \
	  | grep -oE '<(Body|StringValue)>[^<]*' | sed -E 's/<Body>/message: /; s/<StringValue>/  reason: /'

sms: ## every SMS the local SNS (moto on :5005) has "sent"
	@curl -s http://127.0.0.1:$(MOTO_PORT)/moto-api/data.json | $(PY) -c 'import json,sys; [print(m["phone_number"], m["message"]) for m in json.load(sys.stdin).get("sns",{}).get("SMS",[])]'

sandbox: ## the carrier sandbox alone on :9101 (simulated time 60x); `make stack` starts its own
	cargo run --quiet -p parcelwatch-local --bin sandbox -- --port 9101 --speed 60

clean: ## remove build output and the local venv
	cargo clean
	rm -rf $(VENV) .local
