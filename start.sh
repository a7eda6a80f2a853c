#!/usr/bin/env bash
# One command to serve: ./setup.sh sets up what is missing (nothing at all once set up, so later
# starts run offline; never test tools or a browser), then `xiaoq serve` with these arguments,
# e.g. ./start.sh --model ~/models/qwen2.5-0.5b-instruct-q4_k_m.gguf
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
exec .venv/bin/xiaoq serve "$@"
