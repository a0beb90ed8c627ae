# parcelwatch — the verbs a person types. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     ?= .venv
PY       ?= python3
N        ?= 200
DAYS     ?= 6
SEED     ?= 7
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# Pinned local-stack tools (PyPI) live in requirements-local.txt.

.PHONY: help setup build test unit integration lint fmt template demo stack sandbox invoke-scheduler clean report

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.installed: requirements-local.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-local.txt
	touch $@

setup: $(VENV)/.installed ## install the pinned local stack (moto, cfn-lint, cargo-lambda) into .venv

build: ## debug build of every crate
	cargo build --workspace --all-targets

test: setup template ## every test: unit, handler, sandbox, local-stack integration; cfn-lint; a 10 s fuzz per parser
	cargo test --workspace --lib --bins --tests --examples -- --test-threads=4
	# The criterion bench once, in its test mode (it takes none of libtest's flags).
	cargo test -p parcelwatch --benches
	$(MAKE) fuzz-ci

unit: ## the fast tests only (no moto)
	cargo test --workspace --lib --bins

lint: setup template ## rustfmt, clippy -D warnings, cfn-lint, the fuzz crate compiles
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	# fuzz/ is its own workspace: `cargo test` never compiles it, so a changed handler struct
	# would only break `make fuzz-ci`, at the end of CI. Checked here, in a minute.
	cargo check --manifest-path fuzz/Cargo.toml --bins

template: setup ## check template.yaml offline
	$(VENV)/bin/cfn-lint template.yaml

fmt: ## format the code
	cargo fmt --all

demo: setup ## the whole product on the local stack: N shipments (default 200) over at most DAYS simulated days; ROUTES=, PUSH=1, KDNIAO_FAILS_AFTER=hours
	cargo run --quiet -p parcelwatch-local --bin demo -- --shipments $(N) --days $(DAYS) --seed $(SEED) \
	  $(if $(ROUTES),--routes '$(ROUTES)') $(if $(PUSH),--push) $(if $(KDNIAO_FAILS_AFTER),--kdniao-fails-after-hours $(KDNIAO_FAILS_AFTER))

stack: setup ## start moto + resources + carrier sandbox and print the env for cargo lambda
	cargo run --quiet -p parcelwatch-local --bin stack

report: setup ## delivery analytics table (routes: count, p50/p90 delivery time, exception rate; stages): N parcels (200) through a fresh local run of at most DAYS (6); STACK=1 reads the table of .local/stack.env instead
	$(if $(STACK),set -a && source $(STACK_ENV) && set +a && )cargo run --quiet -p parcelwatch-local --bin report -- \
	  $(if $(STACK),--stack,--shipments $(N) --days $(DAYS) --seed $(SEED))

# ---- running the functions like Lambda does, against `make stack` (see README "Invoking")
WATCH_PORT   ?= 9001
MOTO_PORT    ?= 5005
SANDBOX_PORT ?= 9101
STACK_ENV    := .local/stack.env

.PHONY: watch invoke invoke-scheduler invoke-order-sync dlq redrive shipments sms soak bench

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

invoke-order-sync: ## run order-sync under `make watch` as of now: pulls the orders `make stack` put on the sandbox
	@mkdir -p .local
	sed -E 's/"time": "[^"]*"/"time": "'"$$(date -u +%Y-%m-%dT%H:%M:%SZ)"'"/' events/order-sync/scheduled.json > .local/order-sync-now.json
	cargo lambda invoke order-sync -A 127.0.0.1 -P $(WATCH_PORT) --data-file .local/order-sync-now.json

SOAK_PARCELS ?= 2000
soak: setup ## the soak: SOAK_PARCELS (2000) parcels under injected faults; lost = 0, duplicates = 0 or it fails (SOAK_ARGS= for more flags)
	cargo run --quiet -p parcelwatch-local --bin soak -- --parcels $(SOAK_PARCELS) $(SOAK_ARGS)

# `make bench` settings (see README "Figures"): parcels and simulated hours of the throughput run,
# starts per function binary, journeys of the schedule figures, orders per platform, pushes timed,
# criterion's measurement time per benchmark (s); BENCH_ARGS= for more (e.g. --only cpu,schedule).
BENCH_PARCELS    ?= 200
BENCH_HOURS      ?= 12
BENCH_COLDSTARTS ?= 5
BENCH_JOURNEYS   ?= 300
BENCH_ORDERS     ?= 500
BENCH_PUSHES     ?= 40
BENCH_SECONDS    ?= 2
BENCH_DEPLOYED   ?= 200
FUNCTIONS        := scheduler tracker notifier order-sync api

bench: setup ## the figures: CPU per check, cold starts, throughput, AWS cost per 1M checks, calls and latency; table in bench/results.md
	cargo build --release $(addprefix -p ,$(FUNCTIONS))
	cargo bench -p parcelwatch --bench check -- --warm-up-time 1 --measurement-time $(BENCH_SECONDS)
	cargo run --release --quiet -p parcelwatch-local --bin bench -- --parcels $(BENCH_PARCELS) --hours $(BENCH_HOURS) \
	  --coldstart-runs $(BENCH_COLDSTARTS) --journeys $(BENCH_JOURNEYS) --orders $(BENCH_ORDERS) --pushes $(BENCH_PUSHES) \
	  --deployed-parcels $(BENCH_DEPLOYED) $(BENCH_ARGS)

# moto routes a request by the service named in the credential scope; it checks no signature.
MOTO_AUTH = Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/$(1)/aws4_request, SignedHeaders=host, Signature=0

dlq: ## peek at the tracking DLQ of `make stack`: body and reason (messages stay in the queue)
	@test -f $(STACK_ENV) || { echo "no $(STACK_ENV): start 'make stack' first" >&2; exit 1; }
	@source $(STACK_ENV) && curl -sf "$$TRACKING_DLQ_URL" -H "$(call MOTO_AUTH,sqs)" \
	  -d Action=ReceiveMessage -d MaxNumberOfMessages=10 -d VisibilityTimeout=0 -d MessageAttributeName.1=All \
	  | $(PY) -c 'import sys, xml.etree.ElementTree as E; q="{http://queue.amazonaws.com/doc/2012-11-05/}"; \
	    [print(m.findtext(q+"Body"), "\n  reason:", m.findtext(q+"MessageAttribute/"+q+"Value/"+q+"StringValue")) for m in E.parse(sys.stdin).iter(q+"Message")]'

redrive: ## replay the DLQs of `make stack` safely: make redrive [QUEUE=tracking|notify] [APPLY=1] (dry run lists reasons)
	@test -f $(STACK_ENV) || { echo "no $(STACK_ENV): start 'make stack' first" >&2; exit 1; }
	set -a && source $(STACK_ENV) && set +a && cargo run --quiet -p parcelwatch-local --bin redrive -- $(or $(QUEUE),tracking) $(if $(APPLY),--apply)

shipments: ## the shipments in the table of `make stack`: status, sub-status, lines, next check
	@test -f $(STACK_ENV) || { echo "no $(STACK_ENV): start 'make stack' first" >&2; exit 1; }
	@source $(STACK_ENV) && curl -sf "$$AWS_ENDPOINT_URL/" -H "$(call MOTO_AUTH,dynamodb)" \
	  -H 'X-Amz-Target: DynamoDB_20120810.Scan' -H 'Content-Type: application/x-amz-json-1.0' \
	  -d '{"TableName": "'"$$TABLE_NAME"'", "FilterExpression": "sk = :m AND begins_with(pk, :s)", "ExpressionAttributeValues": {":m": {"S": "META"}, ":s": {"S": "SHIP#"}}}' \
	  | $(PY) -c 'import sys, json; v=lambda i,k: next(iter(i.get(k, {"S": "-"}).values())); \
	    [print("%-20s %-25s %-11s lines %2s  next check %s  %s" % ((v(i, "carrier") + "/" + v(i, "number"),) + tuple(v(i, k) for k in ("status", "sub_status", "event_count", "next_check_at", "last_event_desc")))) \
	     for i in sorted(json.load(sys.stdin)["Items"], key=lambda i: v(i, "pk"))]'

sms: ## every SMS the local SNS (moto on :5005) has "sent"
	@curl -s http://127.0.0.1:$(MOTO_PORT)/moto-api/data.json | $(PY) -c 'import json,sys; [print(m["phone_number"], m["message"]) for m in json.load(sys.stdin).get("sns",{}).get("SMS",[])]'

sandbox: ## the carrier sandbox alone on :9101, time 60x (`make stack` runs its own on :9100)
	cargo run --quiet -p parcelwatch-local --bin sandbox -- --port $(SANDBOX_PORT) --speed 60

# ---- fuzzing (cargo fuzz; fuzz/ is its own workspace, see scripts/fuzz.sh)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=

.PHONY: fuzz fuzz-ci

fuzz: ## fuzz every parser FUZZ_SECONDS (default 60) each; FUZZ_TARGETS='kdniao_push …' for some
	scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-ci: ## the short fuzz run of `make test`: 10 s per target
	scripts/fuzz.sh 10

clean: ## remove build output and the local venv
	cargo clean
	rm -rf $(VENV) .local
