#!/usr/bin/env bash
# Runs the whole test suite: sets up what is missing for tests (./setup.sh --test), then the Python tests (unit,
# real llama.cpp on a generated tiny GGUF, API, CLI, browser) and the front end's unit tests.
# When ../shared/models/get-qwen-gguf.sh exists, the real-model tests run too
# (or set XIAOQ_TEST_MODEL=/path/to/model.gguf yourself). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --test
getter="../shared/models/get-qwen-gguf.sh"
if [ -z "${XIAOQ_TEST_MODEL:-}" ] && [ -f "$getter" ]; then
  XIAOQ_TEST_MODEL=$(bash "$getter") && export XIAOQ_TEST_MODEL || echo "[test] could not fetch the real model; real_model tests will be skipped" >&2
fi
if [ -f frontend/package.json ]; then
  # The front end: unit tests, type check, the shipped build is what the sources build to
  # (src/xiaoq/web is committed so pip users never need Node), and the first-load size budget.
  (cd frontend && npm run --silent test && npx --no-install vue-tsc --noEmit -p tsconfig.json \
     && npm run --silent check-build && npm run --silent size)
fi
exec .venv/bin/python -m pytest "$@"
