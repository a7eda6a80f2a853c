#!/usr/bin/env bash
# One command: set XiaoQ up (./setup.sh, idempotent) and start the server.
# Arguments go to `xiaoq serve`, e.g. ./start.sh --model ~/models/qwen2.5-0.5b-instruct-q4_k_m.gguf
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
exec .venv/bin/xiaoq serve "$@"
