# The README's two commands: `make app` and `make test`. Both create .venv once and
# reinstall only when a requirements file changes (the stamp files record that).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
ADDRESS ?= 127.0.0.1

.PHONY: app test install install-test install-ray ray-test browser bench train clean loadtest precompute gpu-check

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-test.txt
	touch $@

$(VENV)/.installed-ray: requirements-ray.txt $(VENV)/.installed-test
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-ray.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# the optional Ray extra (docs/ray.md); `make test` runs tests/test_ray.py too whenever Ray is installed
install-ray: $(VENV)/.installed-ray

browser:
	@bash scripts/ensure_chromium.sh

app: install
	$(PY) -m streamlit run dashboard/app.py --server.address=$(ADDRESS) --server.port=$(PORT)

test: install-test browser
	$(PY) -m pytest -q tests

ray-test: install-ray
	$(PY) -m pytest -q tests/test_ray.py

# 8 real browser sessions at once + the hostile uploads; writes out/loadtest.json (see docs/loadtest.md)
loadtest: install-test browser
	$(PY) tests/loadtest.py --sessions 8

bench: install-test
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# every analysis on CUDA and on the CPU, agreement asserted, timings into docs/gpu.md (CUDA rows skipped without a GPU)
gpu-check: install-test
	$(PY) scripts/gpu_check.py --doc docs/gpu.md

train: install
	$(PY) scripts/train_zoo.py

# the Vulnerability page's results at its default settings for every bundled model (assets/precomputed);
# run after `make train` (tests/test_precomputed.py fails while they are stale)
precompute: install
	$(PY) scripts/precompute.py

clean:
	rm -rf $(VENV)
