# The two commands a new machine needs are `make run` and `make test`; the rest are their parts.
SHELL := /bin/bash
PY := .venv/bin/python
export UV_PYTHON_DOWNLOADS := never

.PHONY: run test deps infra-up infra-down migrate lint format docs bench fuzz-api chaos clean

run: deps infra-up migrate ## everything up, offline on the LLM stub; Ctrl-C stops it all
	@$(PY) scripts/run_platform.py

test: deps infra-up ## the whole suite against real Kafka, PostgreSQL and Redis
	@$(PY) -m pytest $(PYTEST_ARGS)

deps:
	@bash scripts/bootstrap.sh

infra-up:
	@bash scripts/infra/up.sh

infra-down:
	@bash scripts/infra/down.sh

migrate: deps infra-up
	@for svc in auth character_gen chat dossier; do $(PY) -m orrery_$$svc migrate || exit 1; done

lint: deps
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/mypy shared/src services/*/src

format: deps
	@.venv/bin/ruff check --fix .
	@.venv/bin/ruff format .

docs: deps ## regenerate the documents derived from code
	@$(PY) -m orrery_shared.events.docs > docs/events.md
	@$(PY) -m scripts.deploy_config
	@$(PY) -m scripts.asyncapi
	@$(PY) -m scripts.public_openapi

fuzz-api: deps infra-up ## schemathesis over the whole public API, >= 20,000 cases (the suite runs a short version)
	@ORRERY_FUZZ_EXAMPLES=$${ORRERY_FUZZ_EXAMPLES:-700} ORRERY_FUZZ_MIN_CASES=$${ORRERY_FUZZ_MIN_CASES:-20000} \
		$(PY) -m pytest tests/e2e/test_gateway_schema.py -s $(PYTEST_ARGS)

bench: deps infra-up
	@for b in bench/[a-z]*.py; do m=$$(basename $$b .py); echo "== bench.$$m"; $(PY) -m bench.$$m || exit 1; done

chaos: deps infra-up ## the replicated platform under CHAOS_FAULTS faults (default 1200), then invariants and a table
	@$(PY) -m tests.chaos.run --faults $${CHAOS_FAULTS:-1200} $(CHAOS_ARGS)

clean: infra-down
	rm -rf .orrery .venv
