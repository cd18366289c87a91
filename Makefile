# Perry Hub. `make run` starts a hub on this machine; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
DATA_DIR ?= $(CURDIR)/data
HUB_ENV := $(DATA_DIR)/hub.env
MYSQL_ENV := $(DATA_DIR)/mysql.env
export PERRY_DB_USER ?= perry
export PERRY_DB_PASSWORD ?= perry
export PERRY_DB_NAME ?= perry_hub

.PHONY: help run run-mysql test lint fmt bench attacks faults services up down migrate build clean-data deploy-check compose-smoke compose-env

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

services: ## Ensure MariaDB and RabbitMQ run (installs them if missing)
	@scripts/ensure-services.sh

$(HUB_ENV):
	@scripts/init-local-env.sh "$(HUB_ENV)"

$(MYSQL_ENV):
	@scripts/init-local-env.sh --mysql "$(MYSQL_ENV)"

run: $(HUB_ENV) ## Run the hub on :3456: one process, SQLite and blobs in ./data, nothing to install
	@unset PERRY_DB_USER PERRY_DB_PASSWORD PERRY_DB_NAME; set -a; source "$(HUB_ENV)"; set +a; \
	  $(CARGO) run --release -p standalone --bin perry-hub

run-mysql: services $(HUB_ENV) $(MYSQL_ENV) ## The same hub on MariaDB and RabbitMQ (installs them if missing)
	@set -a; source "$(HUB_ENV)"; source "$(MYSQL_ENV)"; set +a; \
	  $(CARGO) run --release -p standalone --bin perry-hub

test: ## Run every test against real MariaDB, RabbitMQ and S3, then compose-smoke (installs what is missing)
	@scripts/test.sh

lint: ## rustfmt check, clippy with warnings denied, and job state written only by crates/job
	$(CARGO) fmt --all --check
	scripts/check-job-writes.sh
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

deploy-check: ## Validate Dockerfile, docker-compose.yml and k8s/ offline
	@scripts/validate-deploy.sh

compose-smoke: ## Build the image, start docker-compose.yml, push a build through the proxy, tear down (~2 min warm)
	@scripts/compose-smoke.sh

compose-env: ## Write .env with generated secrets for docker compose (kept if it exists)
	@scripts/compose-env.sh

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## Throughput and memory figures (streaming, WebSocket connections, live events, cold Windows builds)
	@scripts/ensure-services.sh --s3
	$(CARGO) bench -p perry-hub-tests --bench bench --locked

attacks: ## Run the attack scenarios (issue 15) and render docs/attacks.md from what they saw
	@scripts/ensure-services.sh --s3
	rm -rf target/attacks
	PERRY_TEST_S3_ENDPOINT="$${PERRY_TEST_S3_ENDPOINT:-http://127.0.0.1:$${PERRY_TEST_S3_PORT:-8014}}" \
	  $(CARGO) nextest run -p perry-hub-tests --locked -E 'test(/^attacks::/) | test(/^download::attempts::/)'
	scripts/attacks-report.sh

faults: ## Run the fault scenarios (issue 12) and render docs/faults.md from what they saw
	@scripts/ensure-services.sh --s3
	@scripts/faults-report.sh --run

migrate: services $(HUB_ENV) $(MYSQL_ENV) ## Apply the MySQL migrations (the SQLite hub migrates itself on start)
	@set -a; source "$(HUB_ENV)"; source "$(MYSQL_ENV)"; set +a; $(CARGO) run --release -p standalone --bin perry-hub -- migrate

up: compose-env ## docker compose up (MySQL, RabbitMQ, S3, the four services, a proxy)
	docker compose up --build

down: ## docker compose down
	docker compose down

clean-data: ## Remove ./data (local blobs and generated secrets)
	rm -rf "$(DATA_DIR)"
