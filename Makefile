# Quick start: `make demo` (install + phantom cohort with preview), `make test` (install + test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo
DEMO_CASES ?= 20

.PHONY: demo test install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned in pyproject.toml (2.13.0, CPU build); installed first so pip never looks for a CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(BIN)/idh-predictor phantom --out $(DEMO_DIR)/cohort --cases $(DEMO_CASES) --seed 0 --preview
	$(BIN)/idh-predictor segment $(DEMO_DIR)/cohort/PHANTOM-000 --out $(DEMO_DIR)/PHANTOM-000_predicted_seg.nii.gz \
		--overlay $(DEMO_DIR)/PHANTOM-000_segmentation.png
	@echo "Open $(DEMO_DIR)/cohort/preview.png (a simulated patient beside a real one) and"
	@echo "$(DEMO_DIR)/PHANTOM-000_segmentation.png (the default model's segmentation vs the phantom's labels)."

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
