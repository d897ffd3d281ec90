# Two commands set everything up on a fresh machine:
#   make demo   virtual environment, install, train on the embedded digits, write pictures
#   make test   the same environment plus the dev extras, then the linter and the test suite
#   make fuzz   every reader fuzzed for FUZZ_SECONDS (default 300), beyond the few seconds that make test spends
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_RUN ?= runs/demo
FUZZ_SECONDS ?= 300

.PHONY: demo test lint fuzz clean

# A CUDA machine keeps the user's own torch (the venv sees the system packages);
# elsewhere the CPU wheel torch==2.13.0 is installed, never a multi-GB CUDA build.
$(PY):
	@if $(PYTHON) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then \
		echo "vaekit: using the CUDA torch of $(PYTHON)"; \
		$(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
		$(PYTHON) -m venv $(VENV); \
	fi

$(VENV)/.torch: | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	@touch $@

$(VENV)/.vaekit: pyproject.toml $(VENV)/.torch
	$(PY) -m pip install --quiet -e .
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.vaekit
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(VENV)/.vaekit
	$(VENV)/bin/vaekit train --config configs/digits.toml --out $(DEMO_RUN) --overwrite
	@echo "pictures: $(DEMO_RUN)/samples.png $(DEMO_RUN)/reconstructions.png $(DEMO_RUN)/loss.png $(DEMO_RUN)/report.html"

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks tools

test: lint
	$(PY) -m pytest -q

fuzz: $(VENV)/.dev
	$(PY) tools/fuzz.py --seconds $(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) runs
