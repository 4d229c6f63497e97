# The two commands: `make run` serves the API on http://127.0.0.1:4000, `make test` runs the suite.
# Both first set up what is missing: Debian packages (when run as root), the virtualenv, Python packages.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Software behind the offline models (Tesseract languages, Apertium pairs) and the fonts: one list,
# debian-packages.txt, which the cluster images (k8s/Dockerfile.*) install too. The tests also start a
# PostgreSQL server on loopback (the server itself never needs one), a Prometheus server scraping the
# multi-node test cluster (tests/cluster/test_multinode.py), and drive Debian's chromium with Playwright
# (tests/browser/test_ui.py: Playwright's own browser download is not used).
DEB_PACKAGES := $(shell sed -e 's/\#.*//' debian-packages.txt)
test: DEB_PACKAGES += postgresql prometheus chromium

# Ray's token authentication on wherever Ray runs (`ray.init` turns it on by itself, `ray start` does not):
# `make run` and `make cluster-demo` give their clusters a token file of their own, the tests a token
# of theirs (tests/conftest.py), never ~/.ray/auth_token.
export RAY_AUTH_MODE := token
# Serve's HTTP proxies answer a request lost with its ingress replica in the API's JSON (deployments/proxy_errors.py).
export RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH := deployments.proxy_errors:middlewares

.PHONY: run test quick bench k8s image cluster-demo setup system-deps lint

# `serve run configs/local.yaml` on a Ray head of its own, on loopback, with a token (tools/serve_local.py).
run: setup
	$(BIN)/python tools/serve_local.py configs/local.yaml

test: setup $(VENV)/.test-installed $(VENV)/.llama-server
	$(BIN)/python -m pytest

# For engineers between changes, not instead of `make test`: the in-process folders only (unit, engines,
# store; a few minutes). pytest's last line says how many tests it deselected.
QUICK = not serve and not browser and not faults and not cluster and not bench
quick: setup $(VENV)/.test-installed $(VENV)/.llama-server
	@echo "make quick: only tests marked '$(QUICK)'; make test runs them all"
	$(BIN)/python -m pytest -m "$(QUICK)"

# Every benchmark at its real size, one after the other, and bench/RESULTS.md from what they print
# (bench/all_benches.py; `.venv/bin/python bench/all_benches.py batching` runs one again). Ours against
# the original builds the original's virtualenv (bench/.original-venv) the first time; the lost node's
# benchmark starts a PostgreSQL server of its own (Debian's postgresql, installed as root).
bench: DEB_PACKAGES += postgresql
bench: setup
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python bench/all_benches.py

# The KubeRay manifests, from configs/cluster.yaml and configs/gpu.yaml (a test fails on drift).
k8s: setup
	$(BIN)/python k8s/generate.py

# A real multi-node Ray cluster on this machine (a head, two workers, one with Tesseract declared)
# running configs/cluster.yaml as `serve deploy` puts it: tools/local_cluster.py, as tests/cluster/test_multinode.py.
cluster-demo: setup
	$(BIN)/python tools/local_cluster.py

# The cluster images the KubeRay manifests name (k8s/Dockerfile.cpu and .gpu), where a container
# engine runs (`docker` or `podman`; CONTAINER_ENGINE=... to choose).
CONTAINER_ENGINE ?= $(shell command -v docker || command -v podman)
# Each base image's digest, recorded in k8s/base-images.txt ("-" until recorded: the build then stops).
RAY_IMAGE_DIGEST_CPU ?= $(shell awk '$$1 == "cpu" {print $$3}' k8s/base-images.txt)
RAY_IMAGE_DIGEST_GPU ?= $(shell awk '$$1 == "gpu" {print $$3}' k8s/base-images.txt)
image:
	@if [ -z "$(CONTAINER_ENGINE)" ] || ! $(CONTAINER_ENGINE) info >/dev/null 2>&1; then \
		echo "No container engine runs here (docker or podman): build k8s/Dockerfile.cpu and k8s/Dockerfile.gpu where one does."; \
		exit 1; fi
	@for digest in "$(RAY_IMAGE_DIGEST_CPU)" "$(RAY_IMAGE_DIGEST_GPU)"; do \
		if ! echo "$$digest" | grep -Eqx 'sha256:[0-9a-f]{64}'; then \
			echo "k8s/base-images.txt lacks a base image's digest: record it first (docs/operations.md, Kubernetes)."; \
			exit 1; fi; done
	$(CONTAINER_ENGINE) build --build-arg RAY_IMAGE_DIGEST=$(RAY_IMAGE_DIGEST_CPU) -f k8s/Dockerfile.cpu -t ocr-translate-serve:latest .
	$(CONTAINER_ENGINE) build --build-arg RAY_IMAGE_DIGEST=$(RAY_IMAGE_DIGEST_GPU) -f k8s/Dockerfile.gpu -t ocr-translate-serve:latest-gpu .

lint: setup $(VENV)/.test-installed
	$(BIN)/ruff check .

setup: system-deps $(VENV)/.installed

system-deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian packages: $$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else \
		echo "Missing Debian packages: $$missing"; \
		echo "Install them with: sudo apt-get install $$missing (their models stay hidden until then)"; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# llama.cpp's OpenAI-compatible server, for the `openai` family's tests against a real server
# (tests/engines/test_llama_cpp_server.py). PyPI has it as source only: the first build compiles llama.cpp
# (about 9 minutes on 2 cores; pip keeps the wheel for the next virtualenv). A failed build is tried
# again by the next `make test`, and meanwhile those tests fail saying so, unless OCR_SERVE_SKIP_LLAMA=1.
LLAMA_SERVER := llama-cpp-python[server]==0.3.36
$(VENV)/.llama-server: $(VENV)/.test-installed
	$(BIN)/python -m pip install '$(LLAMA_SERVER)' && touch $@ || \
		echo "llama-cpp-python could not be built here: its tests fail unless OCR_SERVE_SKIP_LLAMA=1"

# What the server needs (`make run`); reinstalls when pyproject.toml changes (pip reuses its cache).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

# What the tests add (`make test`): pytest, hypothesis, schemathesis, mutmut, Playwright, linters, and
# the bench extra (matplotlib, psutil): tests/bench/ runs every bench script at a tiny size.
$(VENV)/.test-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -e '.[test,bench]'
	touch $@
