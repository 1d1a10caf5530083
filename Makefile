# Two commands do everything on a fresh machine:
#   make run   - install into .venv if needed, then search students of resnet101 under 5 GFLOPs
#   make test  - install into .venv if needed, then run the whole test suite
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.studentnas-installed
FMNIST := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
FORTUNES := /usr/share/games/fortunes/science
# torch and torchvision are pinned in the same pip command as the project, so an unpinned
# dependency can never pull the CUDA build of torch (gigabytes).
TORCH  := torch==2.13.0 torchvision==0.28.0

.PHONY: run test test-fast setup data lint bench clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH) -e '.[dev]'
	@touch $(STAMP)

# Debian's dataset-fashion-mnist (real images, MIT licence) and fortunes (real English text for the
# language model, BSD licence) for tests and benchmarks.
data:
	@missing=""; \
	[ -f $(FMNIST) ] || missing="$$missing dataset-fashion-mnist"; \
	[ -f $(FORTUNES) ] || missing="$$missing fortunes"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "warning: Debian packages missing:$$missing; install them with apt-get"; fi; \
	fi

run: setup
	$(VENV)/bin/studentnas search --teacher resnet101 --budget 5GFLOPs --resume

# the tests start with the lint: a broken layering contract fails `make test`
test: setup lint
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q

test-fast: setup
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not slow"

# ruff, then the import-linter contracts of pyproject.toml (docs/architecture.md) on the installed layout
lint: setup
	$(VENV)/bin/ruff check studentnas search_spaces proxies scripts tests
	$(PY) scripts/lint_imports.py

bench: setup
	HF_HUB_OFFLINE=1 $(PY) scripts/bench_cost.py
	HF_HUB_OFFLINE=1 $(PY) scripts/bench_search.py --verify

clean:
	rm -rf $(VENV) runs build *.egg-info
