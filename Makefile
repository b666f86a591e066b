# ltlib: `make tutorial` runs the notebooks headless; `make test` runs the test suite.
# Both create (or reuse) the virtual environment in .venv and install Fashion-MNIST with apt if missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
DATASET ?= fashion_mnist_lt
FMNIST_DIR ?= $(or $(LTLIB_FASHION_MNIST_DIR),/usr/share/datasets/fashion-mnist)
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
TUTORIAL_DIR := exp/tutorial

.PHONY: install data test tutorial bench scripts lab clean

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

test: install data
	$(PY) -m pytest -q

# SEEDS=n runs every notebook on seeds 0..n-1 (empty: each notebook's default)
SEEDS ?=
SEEDS_ARG := $(if $(SEEDS),-y "seeds: [$(shell seq -s ', ' 0 $$(( $(SEEDS) - 1 )))]")

tutorial: install data
	@mkdir -p $(TUTORIAL_DIR)
	@start=$$(date +%s); for nb in $(NOTEBOOKS); do \
		out="$(TUTORIAL_DIR)/$$(basename $$nb)"; \
		echo "== $$nb ($(PROFILE), $(DATASET))"; t0=$$(date +%s); \
		$(VENV)/bin/papermill "$$nb" "$$out" --cwd notebooks \
			-p profile $(PROFILE) -p dataset $(DATASET) $(SEEDS_ARG) --progress-bar || exit 1; \
		$(VENV)/bin/jupyter nbconvert --to html --log-level WARN "$$out" || exit 1; \
		echo "== $$nb: $$(( $$(date +%s) - t0 )) s"; \
	done; \
	echo "Executed notebooks and their HTML: $(TUTORIAL_DIR)/  figures: exp/figures/  runs: exp/$(DATASET)/"; \
	echo "Wall time: $$(( $$(date +%s) - start )) s"

bench: install data
	$(PY) -m ltlib.bench

scripts: install
	$(PY) -m ltlib.export

lab: install data
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
