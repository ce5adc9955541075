# The two front-door commands: `make run` and `make test`. Both create .venv when missing and install
# with constraints.txt (exact pins of every package, written by `make lock`; it pins torch: an unpinned torch
# pulls a multi-GB CUDA build on CPU machines).
# A stamp per (extras, pyproject.toml, constraints.txt) makes the second call skip the install.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
PYTEST_ARGS ?=
SPEC ?= search_spaces/quickstart.yaml

.PHONY: run test test-faults test-cluster test-all bench install install-test clean lock

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-run: pyproject.toml constraints.txt | $(PY)
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e .
	@touch $@

# tests also install the dgl extra so that the classic-ALIGNN (DGL) paths run too
$(VENV)/.stamp-test: pyproject.toml constraints.txt | $(PY)
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[test,dgl]'
	@touch $@

install: $(VENV)/.stamp-run
install-test: $(VENV)/.stamp-test

# each `make run` is a new experiment (experiments/quickstart-<time>); `tlsearch resume DIR` continues one
run: $(VENV)/.stamp-run
	$(VENV)/bin/tlsearch run $(SPEC) --name $$(basename $(SPEC) .yaml)-$$(date +%Y%m%d-%H%M%S)

test: $(VENV)/.stamp-test
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# the fault-injection suite (real Ray: a worker node killed, the driver SIGKILLed and resumed); CI runs it
# after `make test`
test-faults: $(VENV)/.stamp-test
	$(PY) -m pytest -m slow tests/search/test_faults.py $(PYTEST_ARGS)

# the cluster path of deploy/README.md: a head and a worker (`ray start`), the study as Ray jobs (`ray job
# submit --working-dir`), stopped and resumed; and a study on object storage (s3://, a moto server on 127.0.0.1)
# whose driver is killed and resumed from another machine's empty cache; CI runs it after test-faults
test-cluster: $(VENV)/.stamp-test
	$(PY) -m pytest -m slow tests/search/test_ray_jobs.py tests/search/test_object_storage.py $(PYTEST_ARGS)

test-all: $(VENV)/.stamp-test
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.stamp-test
	$(PY) benchmarks/graphs.py
	$(PY) benchmarks/trainer.py
	$(PY) benchmarks/overhead.py --cpus 1
	$(PY) benchmarks/overhead.py --cpus 2
	$(PY) benchmarks/search_efficiency.py
	$(PY) benchmarks/cost_noise.py

clean:
	rm -rf $(VENV) .pytest_cache

# regenerate constraints.txt (exact pins of everything a fresh install resolves) from constraints.in and
# pyproject.toml in a throw-away venv; then run `make test` before committing the new pins
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip --disable-pip-version-check -q install -c constraints.in torch==2.13.0
	.lock-venv/bin/python -m pip --disable-pip-version-check -q install -c constraints.in -e '.[test,dgl]'
	.lock-venv/bin/python tools/lock.py .lock-venv/bin/python constraints.in > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .lock-venv
