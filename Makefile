# Office Hours Intake — `make run` and `make test` do all the set-up on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export INTAKE_DATA_DIR ?= $(CURDIR)/.data
DATA := $(INTAKE_DATA_DIR)
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export UV_PYTHON_DOWNLOADS ?= never
PY := $(CURDIR)/.venv/bin/python
UNAME := $(shell uname -s)
APT_PACKAGES := libopenblas0-pthread
TEST_APT_PACKAGES := chromium
SCALE_APT_PACKAGES := haproxy
MODEL_DIR := $(DATA)/models/smollm2-135m-instruct-f32

.PHONY: help run stop status logs test test-fast lint index model bench finetune eval replay classifiers demo setup system-packages browser bench-load bench-memory chaos fuzz scale-out proxy demo-semester report bench-analytics

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-14s %s\n", $$1, $$2}'

run: setup model ## Install what is missing, start everything under supervisord, print the demo chat URL
	@$(PY) -m services.stack up
	@$(PY) -m services.stack status
	@$(PY) -m services.gateway.demo
	@if [ -f $(DATA)/staff-password ]; then echo "Staff pages: $${INTAKE_PUBLIC_URL:-http://127.0.0.1:8080}/staff (password in $(DATA)/staff-password)"; fi
	@echo "Stop with 'make stop'; inspect with 'make status' (supervisorctl status) and 'make logs'."

stop: ## Stop every process (supervisorctl shutdown)
	@if [ -x $(PY) ]; then $(PY) -m services.stack down; fi

status: ## supervisorctl status
	@$(PY) -m services.stack status

logs: ## Tail the gateway, worker and inference logs
	@tail -n 40 $(DATA)/logs/gateway.log $(DATA)/logs/worker.log $(DATA)/logs/inference.log

test: setup model browser ## Install what is missing and run every test
	@mkdir -p test-output
	$(PY) -m pytest -p no:cacheprovider -ra --durations=20

test-fast: setup ## Run the tests that need neither the model nor a browser
	$(PY) -m pytest -m "not slow and not browser" -ra

lint: setup ## ruff (format + lint) and mypy
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m mypy services finetune bench

index: setup ## (Re)index corpus/ into Chroma + BM25 (needs the stack's Chroma: run `make run` first)
	$(PY) -m services.indexer build

model: $(MODEL_DIR)/config.json ## Build the embedded default model (SmolLM2-135M-Instruct, float32 MLX)

$(MODEL_DIR)/config.json: | setup
	$(PY) -m services.inference.convert --out $(MODEL_DIR)

demo: ## Post a signed demo booking to the running stack and print its chat link
	@$(PY) -m services.gateway.demo

demo-semester: setup ## Fill the running stack's analytics with a synthetic 15-week semester (then open /staff/analytics)
	$(PY) -m services.analytics.semester $(SEMESTER_ARGS)

report: setup ## Send this week's analytics report to every host now (REPORT_ARGS=--dry-run prints instead)
	$(PY) -m services.analytics.weekly $(REPORT_ARGS)

bench-analytics: setup ## Analytics ingest: events/s folded on one core and p95 webhook-to-aggregate, vs raw XADD (own Redis)
	$(PY) -m bench.analytics $(BENCH_ARGS)

bench: setup model ## Benchmarks against the running stack (see bench/)
	$(PY) -m bench.inference_speed
	$(PY) -m bench.retrieval

bench-load: setup model ## 50 students through whole intakes at once + signed webhooks/s, on a stack of its own (LOAD_ARGS=...)
	$(PY) -m bench.load $(LOAD_ARGS)

bench-memory: setup model ## Inference server memory under 8 chat clients: stock mlx-lm vs our launcher, ~6 min (MEMORY_ARGS=...)
	$(PY) -m bench.inference_memory $(MEMORY_ARGS)

chaos: setup model ## Faults on a stack of its own: kill -9 mid-stream, Redis restart, Cal.com/SMTP/Chroma down, junk model
	$(PY) -m pytest -p no:cacheprovider -m chaos -ra --durations=10 tests/chaos

fuzz: setup ## schemathesis on every /schema operation (FUZZ_SCHEMA_EXAMPLES each) + 10,000 mutated signed webhooks
	$(PY) -m pytest -p no:cacheprovider -m "fuzz or not slow" -ra tests/fuzz

scale-out: setup model proxy ## Two gateways, two workers, two inference servers behind HAProxy pass the journey
	$(PY) -m pytest -p no:cacheprovider -m scale -ra tests/test_scale_out.py

finetune: setup model ## Synthetic data (course packs + skeletons, phil210 held out) -> curation -> splits -> LoRA adapter in finetune/adapter
	$(PY) -m finetune.generate
	$(PY) -m finetune.curate
	$(PY) -m finetune.split
	$(PY) -m finetune.train

eval: setup model ## 63 simulated students on unseen course packs, base vs default model, a stack each (EVAL_ARGS=...)
	$(PY) -m finetune.evaluate $(EVAL_ARGS)

replay: setup ## The eval students through the interview in-process, no model (seconds; REPLAY_ARGS=...)
	$(PY) -m finetune.replay $(REPLAY_ARGS)

classifiers: setup ## Labelled messages -> intent and slot classifiers + held-out report (services/understanding/)
	$(PY) -m services.understanding.dataset
	$(PY) -m services.understanding.train

setup: .venv/.synced system-packages ## Install uv, the virtualenv and Debian packages

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

$(UV):
	python3 -m pip install --user --quiet uv

system-packages: ## Debian packages the stack needs (OpenBLAS for MLX on CPU)
ifeq ($(UNAME),Linux)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then $(call apt_install,$$missing); fi
endif

browser: ## Debian's Chromium for the browser tests (Playwright drives it; no browser download)
ifeq ($(UNAME),Linux)
	@command -v chromium >/dev/null || $(call apt_install,$(TEST_APT_PACKAGES))
endif

proxy: ## Debian's HAProxy (the department deployment's front door; the scale-out test uses it)
ifeq ($(UNAME),Linux)
	@command -v haproxy >/dev/null || $(call apt_install,$(SCALE_APT_PACKAGES))
endif

define apt_install
	echo "installing Debian packages: $(1)"; \
	SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(1) >/dev/null
endef
