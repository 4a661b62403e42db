# Quick start: `make demo` (install + the quick demo report), `make test` (install + test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo

.PHONY: demo test web install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned in pyproject.toml (2.13.0, CPU build); installed first so pip never looks for a CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[radiomics,skullstrip]"
	touch $@

# The browser tests drive Debian's Chromium (/usr/bin/chromium; `apt-get install chromium`): Playwright's own
# browser download does not work offline and is never used. Without Chromium they are skipped (outside CI).
$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test,web,dicom]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(BIN)/idh-predictor demo --quick --out $(DEMO_DIR)
	@echo "Open $(DEMO_DIR)/report.html. The full demo (48 patients, LOOCV, layer comparison, 20-shuffle permutation tests of DLR and perfusion; 25 min on 2 cores before the perfusion test was added):"
	@echo "  $(BIN)/idh-predictor demo --out $(DEMO_DIR)-full"

# The web app on the full-size phantom patients the demo made (open http://127.0.0.1:8080).
web: $(VENV)/.installed-test
	$(BIN)/idh-predictor web $(DEMO_DIR)/full-size

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DEMO_DIR) $(DEMO_DIR)-full .pytest_cache
