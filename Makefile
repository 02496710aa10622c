# OCRFlow developer entry points. `make demo` and `make test` work on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on local disk; installing it first keeps pip from pulling CUDA.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,pipeline,tensorboard
# Third-party reference for parity tests only (tests/integration/test_openocr_import.py): OpenOCR's
# pure-Python wheel, unpacked without its dependencies into its own folder, never on our import path.
OPENOCR_REF ?= openocr-python==0.1.5

.PHONY: venv test lint typecheck demo bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install -q --no-deps --target $(VENV)/openocr-ref "$(OPENOCR_REF)"
	touch $@

lint: venv
	$(BIN)/ruff check ocr_core components pipelines tests bench

# ~10 s cold on the 2-core dev machine, so `make test` (what CI runs) fails on a type error too
typecheck: venv
	$(BIN)/mypy ocr_core

test: venv lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider tests; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

demo: venv
	$(BIN)/python -m pipelines.demo

bench: venv
	$(BIN)/python bench/det_train_throughput.py

clean:
	rm -rf $(VENV) build dist *.egg-info demo_out .pytest_cache .mypy_cache
