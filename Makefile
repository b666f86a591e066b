# ltlib: `make tutorial` runs the notebooks headless; `make test` runs the test suite.
# Both create (or reuse) the virtual environment in .venv and install Fashion-MNIST with apt if missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
DATASET ?= fashion_mnist_lt
FMNIST_DIR ?= $(or $(LTLIB_FASHION_MNIST_DIR),/usr/share/datasets/fashion-mnist)

.PHONY: install data test tutorial bench devicecheck scripts readme lab clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[notebooks,test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ltlib)" >/dev/null
	touch $@

data:
	@if [ -f "$(FMNIST_DIR)/train-images-idx3-ubyte.gz" ]; then \
		echo "Fashion-MNIST: $(FMNIST_DIR)"; \
	else \
		echo "Fashion-MNIST missing: installing the Debian package dataset-fashion-mnist"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q dataset-fashion-mnist; \
	fi

# The suite in TEST_WORKERS pytest-xdist workers, one thread each (tests/conftest.py); each notebook and its exported
# script share a worker (--dist loadgroup), so the script reuses the notebook's runs
TEST_WORKERS ?= 2

test: install data
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# The short path: notebooks 01-06 on seed 0 without their sweeps, then 07 with its headline rows on SEEDS seeds
# (default 1), then 08 on seed 0. FULL=1, the long path: every notebook with its own defaults (seeds 0-2, sweeps and ablations); it
# publishes each notebook's results file to exp/summaries/longpath/ (committed). Executed notebooks, their HTML and
# timings.json go to exp/tutorial/.
SEEDS ?=
FULL ?=

tutorial: install data
	$(PY) -m ltlib.tools.tutorial --profile $(PROFILE) --dataset $(DATASET) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(FULL),--full)

bench: install data
	$(PY) -m ltlib.tools.bench

# The first thing to run on a new GPU machine: CPU agreement of every step, loss and mixing rule, the notebooks in
# the smoke profile, the paper recipes timed eager and compiled, one torchrun epoch; a JSON report under exp/devicecheck/
devicecheck: install data
	$(PY) -m ltlib.devicecheck

scripts: install
	$(PY) -m ltlib.tools.export

# The README's headline table, figure and timings, from the committed files under exp/summaries/
readme: install
	$(PY) -m ltlib.report.readme

lab: install data
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
