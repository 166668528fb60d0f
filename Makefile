# The two set-up commands a new user needs:
#   make book   build the web book into _build/html (installs what it needs first)
#   make test   install what the tests need, then run every test
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# PyTorch is installed first. On a machine without an NVIDIA GPU we ask PyTorch's own CPU wheel
# index for it (the default index serves the CUDA build, several GB more), and fall back to the
# default index where that one cannot be reached. On a GPU machine pass e.g. TORCH_SPEC="torch"
# to get (or keep) a CUDA build; TORCH_INDEX="" always uses the default index.
TORCH_SPEC ?= torch==2.13.0
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH_INDEX ?= $(if $(HAS_GPU),,https://download.pytorch.org/whl/cpu)
PYTEST_WORKERS ?= 2
VENDOR := book/_static/vendor

.PHONY: book test chromium lab gpu-check bench vendor clean student-release

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch-installed: | $(PY)
	@if [ -z "$(TORCH_INDEX)" ]; then \
	  $(PY) -m pip install -q "$(TORCH_SPEC)"; \
	elif $(PY) -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=10)' \
	     "$(TORCH_INDEX)" 2>/dev/null; then \
	  echo "== no NVIDIA GPU here: installing $(TORCH_SPEC), the CPU build, from $(TORCH_INDEX)"; \
	  $(PY) -m pip install -q --index-url "$(TORCH_INDEX)" "$(TORCH_SPEC)"; \
	else \
	  echo "== $(TORCH_INDEX) cannot be reached: installing $(TORCH_SPEC) from the default index"; \
	  $(PY) -m pip install -q "$(TORCH_SPEC)"; \
	fi
	touch $@

$(VENV)/.book-installed: pyproject.toml $(VENV)/.torch-installed
	$(PY) -m pip install -q -e ".[book]"
	touch $@

# The light install for working through the labs: JupyterLab and widgets, no jupyter-book.
$(VENV)/.lab-installed: pyproject.toml $(VENV)/.torch-installed
	$(PY) -m pip install -q -e ".[lab]"
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.book-installed $(VENV)/.lab-installed
	$(PY) -m pip install -q -e ".[book,test]"
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

# Widget manager, RequireJS and MathJax are served from the book itself: no CDN.
$(VENDOR)/.stamp: node_modules/.package-lock.json
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/mathjax/output/chtml
	cp node_modules/requirejs/require.js $(VENDOR)/require.js
	cp node_modules/@jupyter-widgets/html-manager/dist/embed-amd.js $(VENDOR)/embed-amd.js
	cp node_modules/@jupyter-widgets/html-manager/dist/*.{woff,woff2,ttf,eot,svg} $(VENDOR)/
	cp node_modules/mathjax/es5/tex-chtml.js $(VENDOR)/mathjax/tex-chtml.js
	cp -r node_modules/mathjax/es5/output/chtml/fonts $(VENDOR)/mathjax/output/chtml/
	# TeX extensions (\boldsymbol, ...) and the menu's accessibility tools load on demand.
	mkdir -p $(VENDOR)/mathjax/input/tex
	cp -r node_modules/mathjax/es5/input/tex/extensions $(VENDOR)/mathjax/input/tex/
	cp -r node_modules/mathjax/es5/ui node_modules/mathjax/es5/a11y node_modules/mathjax/es5/sre $(VENDOR)/mathjax/
	touch $@

vendor: $(VENDOR)/.stamp

# One torch thread per kernel: the chapters train small models, which two threads slow down.
# First: each chapter's install cell follows _config.yml's repository, and the execution cache
# (keyed on a chapter's own code) is dropped when coursekit's sources changed since it was filled.
book: $(VENV)/.book-installed vendor
	$(PY) tools/notebooks.py install-cell book/ch*.ipynb
	$(PY) tools/notebooks.py fresh-cache _build
	OMP_NUM_THREADS=1 $(VENV)/bin/jupyter-book build . --warningiserror --keep-going
	@echo "The book is at $(abspath _build/html/index.html)"

# The browser tests need Debian's chromium: installed here when we are root and apt is there.
CHROMIUM ?= $(or $(COURSEKIT_CHROMIUM),/usr/bin/chromium)
chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "== installing Debian's chromium for the browser tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	else \
	  echo "== NOTE: no Chromium at $(CHROMIUM), so the browser tests (tests marked 'browser') are SKIPPED."; \
	  echo "   To run them: sudo apt-get install chromium (Debian/Ubuntu), or point COURSEKIT_CHROMIUM at a Chromium binary."; \
	fi

# Checked outputs must hold on any CPU: the book is built (tests/test_book.py) with this machine's
# own kernels and its checked outputs compared with the committed ones, while nbval runs every
# notebook on a kernel that rounds as another CPU would (tools/notebooks.py other-cpu-kernel).
test: $(VENV)/.test-installed vendor chromium
	$(PY) tools/notebooks.py fresh-cache _build
	$(PY) tools/notebooks.py other-cpu-kernel
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadscope --nbval-lax --nbval-kernel-name python3-other-cpu tests book $(wildcard labs/source)

# The course root, so both book/ (live experiments) and labs/ are there; it opens on labs/.
lab: $(VENV)/.lab-installed
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/labs $(LAB_ARGS)

# Runs coursekit's tests and chapter 1 on CUDA and reports the device used.
gpu-check: $(VENV)/.test-installed
	COURSEKIT_DEVICE=cuda $(PY) -m coursekit.gpu_check

$(VENV)/.bench-installed: pyproject.toml $(VENV)/.test-installed
	$(PY) -m pip install -q -e ".[book,test,bench]"
	touch $@

bench: $(VENV)/.bench-installed
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The course as students get it (no solutions, hidden tests or grader), from the last commit.
STUDENT_OUT ?= _build/student
student-release:
	$(PYTHON) tools/student_release.py $(STUDENT_OUT)

clean:
	rm -rf _build $(VENDOR) .jupyter_cache
