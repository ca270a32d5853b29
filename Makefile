# The two commands of the quick start: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The unit suite's pytest-xdist workers: most tests wait on daemons they start, so two keep a
# 2-core machine busy.
TEST_WORKERS ?= 2
# The server protocol every daemon the tests start runs on ([gateway] server, the neuron's
# server): `make unit SERVER=hypercorn` runs the suite on hypercorn; empty, the default (httptools).
SERVER ?=
SERVER_ENV := $(if $(SERVER),CORTEX_GATEWAY__SERVER=$(SERVER) NEURON_SERVER=$(SERVER))
# Extra pytest arguments, one variable per run, so that a `-k` or a path meant for one run neither
# narrows another to nothing (pytest's "no tests ran" would fail `make test`) nor adds to its set:
# PYTEST_ARGS for `unit`, HYPERCORN_PYTEST_ARGS for `unit-hypercorn`, VLLM_PYTEST_ARGS for `test-vllm`.
PYTEST_ARGS ?=
HYPERCORN_PYTEST_ARGS ?=
VLLM_PYTEST_ARGS ?=

.PHONY: run test lint typecheck unit unit-hypercorn test-vllm system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch's CPU build; any other torch release pulls a multi-GB CUDA build.
	$(BIN)/pip install -q 'torch==2.13.0'
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

## Run the gateway on its embedded single-host default (http://127.0.0.1:31313).
run: $(STAMP)
	$(BIN)/cortex-kernel serve

## Lint, type-check and run the whole test suite (fails when no test ran).
test: $(STAMP) system-deps lint typecheck unit unit-hypercorn test-vllm

system-deps:
	scripts/install-system-deps

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict $(wildcard plugins/cortex_*) $(filter-out harnesses/cortex_vllm,$(wildcard harnesses/cortex_*))
	$(BIN)/mypy --strict bench tests

## The unit suite in random order, with branch coverage; fails below [tool.coverage.report] fail_under.
## The Codex CLI and Claude Code tests (tests/responses, tests/anthropic) run the binaries
## scripts/codex-env and scripts/claude-code-env install, pinned and cached outside the clone;
## without npm they skip. TEST_WORKERS pytest-xdist workers share the files, each file on one
## worker (--dist loadfile), so a module-scoped fleet starts once.
unit: $(STAMP)
	$(SERVER_ENV) CORTEX_CODEX="$$(scripts/codex-env || true)" CORTEX_CLAUDE_CODE="$$(scripts/claude-code-env || true)" \
	$(BIN)/pytest -p randomly -n $(TEST_WORKERS) --dist loadfile --cov --cov-report=term $(PYTEST_ARGS)

## The tests of what the server protocol decides (framing, [limits], the hostile campaign) again
## on hypercorn, the server that is not the default; `make unit SERVER=hypercorn` runs them all.
unit-hypercorn: $(STAMP)
	CORTEX_GATEWAY__SERVER=hypercorn NEURON_SERVER=hypercorn $(BIN)/pytest -p randomly -n $(TEST_WORKERS) \
	--dist loadfile tests/kernel/test_limits.py tests/kernel/test_send_path.py tests/kernel/test_serving.py \
	tests/campaign $(HYPERCORN_PYTEST_ARGS)

clean:
	rm -rf $(VENV) .vllm-env .vllm-env.lock .mypy_cache .ruff_cache .pytest_cache

## vLLM harness: type-check and test it in a vLLM environment cached outside the clone
## (scripts/vllm-env; the first run on a machine installs vLLM, several GB). The tests run with
## HF_HUB_OFFLINE=1, as on an air-gapped GPU host: no test may reach a model hub.
## The python scripts/vllm-env prints imports this clone's code (never PYTHONPATH's).
test-vllm: $(STAMP)
	python="$$(scripts/vllm-env)" && \
	$(BIN)/mypy --strict --python-executable "$$python" harnesses/cortex_vllm && \
	env -u PYTHONPATH HF_HUB_OFFLINE=1 "$$python" -m pytest -p randomly tests/vllm $(VLLM_PYTEST_ARGS)
