# Wardrobe task runner. Every target goes through dev.py, which installs what it needs first.
.DEFAULT_GOAL := help
PY ?= python3

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

serve: ## Run the embedded service on http://127.0.0.1:8000 (SQLite, demo data)
	$(PY) dev.py serve

test: ## Run the whole test suite (SQLite and MariaDB + Redis)
	$(PY) dev.py test

lint: ## ruff format check, ruff lint, mypy strict
	$(PY) dev.py lint

format: ## Format the code with ruff
	$(PY) dev.py wardrobe --help >/dev/null && .venv/bin/ruff format src tests bench examples devtools && .venv/bin/ruff check --fix src tests bench examples devtools

migrate: ## Apply database migrations (WARDROBE_DATABASE_URL)
	$(PY) dev.py wardrobe migrate

bench: ## Run the HTTP benchmark against the Express baseline (see bench/README.md)
	$(PY) dev.py bench

bench-tasks: ## Run the task-path benchmark: creations/s, oversell check, pipeline tasks/s (bench/TASKS.md)
	$(PY) dev.py bench-tasks

bench-realtime: ## Run the live-push and scale-out benchmark: 1,000 sockets, cache hit ratio, 1,000 rps mixed
	$(PY) dev.py bench-realtime

bench-vendors: ## Run the vendor-path benchmark: 200 tasks through the RunningHub peer at its cap
	$(PY) dev.py bench-vendors

bench-stats: ## Run the statistics benchmark: overview and rollup job over 10 million tasks (bench/README.md)
	$(PY) dev.py bench-stats

screenshots: ## Retake the operator console's screenshots in docs/console/ (devtools/screenshots.py)
	$(PY) dev.py wardrobe --help >/dev/null && .venv/bin/python devtools/screenshots.py

ci: ## What CI runs
	bash .ci/run

.PHONY: help serve test lint format migrate bench bench-tasks bench-realtime bench-vendors bench-stats screenshots ci
