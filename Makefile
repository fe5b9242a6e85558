# TickerHub: one command to start the hub, one to test it.
SHELL := /bin/bash
UV ?= uv
COMPOSE ?= docker compose

.PHONY: help start stop logs run test test-fast lint format bench sync

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

start: ## Run Redis, api and poller with Docker Compose v2.24+ (http://localhost:8000)
	@command -v docker >/dev/null || { echo "make start needs Docker with the Compose v2 plugin (v2.24+); without Docker use 'make run'"; exit 1; }
	@v=$$($(COMPOSE) version --short 2>/dev/null) || { echo "make start needs the Docker Compose v2 plugin (v2.24+): '$(COMPOSE) version' failed. Install Docker Desktop, or Docker Engine with docker-compose-plugin; without Docker use 'make run'"; exit 1; }; \
	IFS=. read -r major minor _ <<< "$${v#v}"; \
	if (( major < 2 || (major == 2 && minor < 24) )); then echo "make start needs Docker Compose v2.24+ (found $$v): please upgrade it"; exit 1; fi
	@[ -f .env ] || cp .env.example .env
	$(COMPOSE) up --build -d
	@port=$${API_PORT:-$$(sed -n 's/^API_PORT=//p' .env | tail -n 1)}; port=$${port:-8000}; \
	echo "TickerHub is starting: http://localhost:$$port/tickers  ws://localhost:$$port/ws/prices  (make logs, make stop)"

stop: ## Stop the Docker Compose stack
	$(COMPOSE) down

logs: ## Follow the Docker Compose logs
	$(COMPOSE) logs -f

sync:
	$(UV) sync --frozen

run: sync ## Run the hub natively (needs uv; starts a local redis-server if none answers)
	$(UV) run --frozen python scripts/run_local.py

test: sync ## Run every test (needs redis-server on PATH; the tests start their own)
	$(UV) run --frozen pytest

test-fast: sync ## Unit tests only (no redis-server, no subprocesses)
	$(UV) run --frozen pytest -m "not integration"

lint: sync ## ruff check, format check and mypy (packages/ and services/)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

format: sync ## ruff fix and format
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

bench: sync ## Fan-out benchmark, api vs naive baseline (BENCH_ARGS="--full" issue sizes, "--json")
	$(UV) run --frozen tickerhub-bench $(BENCH_ARGS)
