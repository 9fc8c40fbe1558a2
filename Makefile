# Thin targets; the work is done by the scripts in hack/.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

.PHONY: help
help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: venv
venv: ## Create .venv with the package and its test extras
	hack/venv.sh

.PHONY: test
test: ## Lint (shellcheck, ruff), types (mypy --strict), unit and integration tests: no cluster needed
	hack/test.sh

.PHONY: up
up: ## Create the kind cluster if missing, build and load images, deploy operator and sample
	hack/up.sh

.PHONY: e2e
e2e: ## Run tests/e2e on kind (KEEP_CLUSTER=1 leaves the cluster up; K=expr runs the scenarios pytest -k selects)
	hack/e2e.sh

.PHONY: bench
bench: ## Benchmarks of issue 10 on the make up cluster, vs plain Kubernetes (ARGS="--only scale --rounds 3")
	hack/bench.sh $(ARGS)

.PHONY: down
down: ## Delete the kind cluster
	hack/down.sh

.PHONY: images
images: ## Build the backend, nginx and operator images
	hack/build-images.sh

.PHONY: airgap
airgap: ## Build every cluster image locally, with no registry (hack/airgap)
	hack/airgap/build.sh

.PHONY: airgap-cold
airgap-cold: ## From nothing: build into a scratch cache, create a second cluster, check round robin
	hack/airgap-cold.sh
