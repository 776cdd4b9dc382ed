# Two entry points: `make run` (main job) and `make test` (the test suite). Both install what they need.
VENV   := .venv
PY     := $(VENV)/bin/python
KPILOT := $(VENV)/bin/kpilot
STAMP  := $(VENV)/.kernelpilot-installed

.PHONY: sysdeps test-sysdeps deps build run test bench clean screenshots

sysdeps:
	@bash scripts/install-sysdeps.sh

test-sysdeps:
	@bash scripts/install-sysdeps.sh test

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[test]' 2>.venv/pip.log || (cat .venv/pip.log; exit 1)
	@$(PY) -c "import kernelpilot" && touch $(STAMP)

deps: sysdeps $(STAMP)

build: deps
	@$(KPILOT) build

run: build
	@$(KPILOT) run

# the tests that share no kernel-wide state run on every core, then the `serial` ones alone
# (tests/conftest.py says which); PYTEST_WORKERS=0 runs everything in one process
PYTEST_WORKERS ?= 2
test: test-sysdeps build
	@$(KPILOT) memory sim --trace synth:mixed --policies all --sizes 0.01 --limit 20000 >/dev/null  # numba's cache, once, before the workers
	@$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup -m "not serial" --durations=15 tests
	@$(PY) -m pytest -q -m serial --durations=15 tests

bench: build
	@$(KPILOT) bench all --json

clean:
	rm -rf kernelpilot/bpf/_build

screenshots: build
	@$(PY) -m kernelpilot.report.screens docs
