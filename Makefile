# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check

.PHONY: demo test test-unit test-integration lint lock soak bench clean asyncapi compose-cli

# The environment the tests pass with: every package at the version (and hash) of
# requirements-dev.lock, then the hub itself without resolving anything again. Re-runs when the
# lock or pyproject.toml changes.
$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --require-hashes -r requirements-dev.lock
	$(PIP) install --no-deps -e .
	touch $(STAMP)

# Regenerate both lock files from pyproject.toml's pins: requirements.lock (the runtime, what the
# Dockerfile installs) and requirements-dev.lock (extras dev + embedded, what $(STAMP) installs).
# Both resolve for every platform from CPython 3.11 on (markers kept) and carry every wheel's hash.
# The versions already locked are kept unless pyproject.toml asks for others; to take the newest
# releases of the transitive dependencies too: `make lock LOCK_FLAGS=--upgrade`.
# uv (pinned) runs from its own virtualenv under build/, never from .venv.
UV_VERSION := 0.13.9
LOCK_TOOLS := build/lock-tools
LOCK_FLAGS ?=
UV_COMPILE = $(LOCK_TOOLS)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' $(LOCK_FLAGS) pyproject.toml
lock:
	test -x $(LOCK_TOOLS)/bin/python || $(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip --quiet --disable-pip-version-check install uv==$(UV_VERSION)
	$(UV_COMPILE) -o requirements.lock
	$(UV_COMPILE) --extra dev --extra embedded -o requirements-dev.lock

# ruff, configured in pyproject.toml ([tool.ruff]); `$(BIN)/ruff check --fix hub tests bench scripts`
# applies the fixes it can make safely
lint: $(STAMP)
	$(BIN)/ruff check hub tests bench scripts

demo: $(STAMP)
	$(BIN)/hub demo

# The official AsyncAPI CLI (@asyncapi/cli, pinned with its whole tree in tools/asyncapi/package-lock.json) in its own
# directory under build/, never global: installed once (about a minute, 1.5 GB) and again only when the lock changes.
# Install scripts are not run (the CLI needs none; some dependencies' would report usage), nor is the CLI's usage
# tracking (its config file is kept here, not in $$HOME). Needs node (20 or later) and npm.
ASYNCAPI_DIR := build/asyncapi-cli
ASYNCAPI_STAMP := $(ASYNCAPI_DIR)/.installed-stamp
ASYNCAPI_CLI := $(ASYNCAPI_DIR)/node_modules/.bin/asyncapi
$(ASYNCAPI_STAMP): tools/asyncapi/package.json tools/asyncapi/package-lock.json
	@command -v npm >/dev/null || { echo "make: npm (with node 20 or later) is needed to install the AsyncAPI CLI; apt-get install nodejs npm" >&2; exit 1; }
	rm -rf $(ASYNCAPI_DIR) && mkdir -p $(ASYNCAPI_DIR)
	cp tools/asyncapi/package.json tools/asyncapi/package-lock.json $(ASYNCAPI_DIR)/
	npm ci --prefix $(ASYNCAPI_DIR) --ignore-scripts --no-audit --no-fund --loglevel=error
	echo '{"analyticsEnabled":"false","infoMessageShown":"true","userID":"integration-hub-ci"}' > $(ASYNCAPI_DIR)/analytics.json
	touch $(ASYNCAPI_STAMP)

# docs/asyncapi.yaml through the official validator; any error or warning fails (an "information", such as a newer
# AsyncAPI version existing, does not). tests/e2e/test_asyncapi_cli.py runs the same CLI.
asyncapi: $(ASYNCAPI_STAMP)
	ASYNCAPI_METRICS_CONFIG_PATH=$(CURDIR)/$(ASYNCAPI_DIR)/analytics.json $(ASYNCAPI_CLI) validate --fail-severity warn docs/asyncapi.yaml

# The official Docker Compose CLI (Debian's docker-compose package, version and hash pinned in
# tools/compose/docker-compose.pin) unpacked under build/, never installed: tests/unit/test_deploy_compose.py
# validates deploy/compose/docker-compose.yml with its `config` (the compose-spec schema and Compose's own checks).
COMPOSE_CLI_DIR := build/docker-compose
COMPOSE_CLI_STAMP := $(COMPOSE_CLI_DIR)/.installed-stamp
$(COMPOSE_CLI_STAMP): tools/compose/docker-compose.pin tools/compose/fetch
	tools/compose/fetch $(COMPOSE_CLI_DIR)
	touch $(COMPOSE_CLI_STAMP)
compose-cli: $(COMPOSE_CLI_STAMP)

# compose-cli is fetched from Debian's mirror by a pinned version: where that fails (the version left the
# suite, no mirror), the suite still runs and the compose check skips, naming `make compose-cli`.
test: lint asyncapi
	@$(MAKE) --no-print-directory compose-cli || echo "make test: the Docker Compose CLI was not fetched (see above); the compose file's official check is skipped" >&2
	@if [ -z "$$HUB_TEST_DATABASE_URL" ]; then ./scripts/ensure-postgres; fi
	$(BIN)/python -m pytest -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# the full size of the soak runs (tests/soak/test_poison_soak.py runs 3,000 events / 3 kills when they are unset)
soak: $(STAMP)
	./scripts/ensure-postgres
	HUB_SOAK_EVENTS=$${HUB_SOAK_EVENTS:-100000} HUB_SOAK_KILLS=$${HUB_SOAK_KILLS:-20} $(BIN)/python -m pytest -q -m soak

clean:
	rm -rf $(VENV) .hub-data build *.egg-info

# The benchmarks (bench/README.md): the pipeline on SQLite at the default size, then on PostgreSQL (a
# scratch database on the local server, dropped after) at each of BENCH_SIZES with the growth side by
# side (BENCH_SIZES=10000,100000,1000000 for the million), then the snapshot. They print their figures;
# a JSON file of them only where asked: `make bench BENCH_OUT=/tmp/bench` writes /tmp/bench/*.json.
BENCH_SIZES ?= 10000,100000
BENCH_JSON = $(if $(BENCH_OUT),--json-out $(BENCH_OUT)/$(1).json)
bench: $(STAMP)
	./scripts/ensure-postgres
	$(BIN)/python bench/pipeline.py $(call BENCH_JSON,pipeline)
	$(BIN)/python bench/pipeline.py --database postgresql --events $(BENCH_SIZES) $(call BENCH_JSON,pipeline-postgresql)
	$(BIN)/python bench/snapshot.py --events 200000 $(call BENCH_JSON,snapshot)  # the whole population: bench/snapshot.py (default 5.6M)
