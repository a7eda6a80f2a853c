#!/usr/bin/env bash
# Sets XiaoQ up, installing only what is missing: once everything is there it runs no installer and
# needs no network (a stamp in .venv records what was installed for which pyproject.toml).
#
#   ./setup.sh          # to serve: a virtualenv in .venv, llama-cpp-python compiled for this CPU
#                       # (see "Building llama.cpp" in README.md) and XiaoQ with its runtime dependencies
#   ./setup.sh --test   # also the test tools (pip extra "test", which holds the voice extra), the
#                       # front end's npm packages (Pyodide among them, for the code runner), Debian's espeak-ng (the voice tests speak with it), Debian's
#                       # postgresql (the store tests start a throwaway server)
#                       # and Chromium for the browser tests (XIAOQ_SKIP_BROWSER=1: no Chromium)
set -euo pipefail
cd "$(dirname "$0")"
MODE=serve
case "${1:-}" in
  --test) MODE=test ;;
  "") ;;
  *) echo "usage: ./setup.sh [--test]" >&2; exit 2 ;;
esac
CHROMIUM=${XIAOQ_CHROMIUM:-/usr/bin/chromium}
PY=${PYTHON:-python3}
LLAMA_VERSION=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  $PY -m venv .venv
  .venv/bin/pip install -q --upgrade pip wheel setuptools
fi
VPY=.venv/bin/python

# llama.cpp build flags. A native build (-march=native) enables every instruction the CPU
# advertises; on some virtual machines that includes AMX, which then dies with "Illegal
# instruction" at the first token. So on x86_64 we turn native off and enable, one by one, the
# SIMD extensions /proc/cpuinfo lists. Set CMAKE_ARGS yourself to override.
cmake_args_for_this_cpu() {
  local arch flags args
  arch=$(uname -m)
  if [ "$arch" != "x86_64" ]; then
    echo "-DGGML_NATIVE=ON"  # ARM (Raspberry Pi, Apple): native is safe and fastest
    return
  fi
  flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  args="-DGGML_NATIVE=OFF"
  has() { case "$flags" in *" $1 "*) return 0;; *) return 1;; esac; }
  has avx && args="$args -DGGML_AVX=ON"
  has avx2 && args="$args -DGGML_AVX2=ON"
  has fma && args="$args -DGGML_FMA=ON"
  has f16c && args="$args -DGGML_F16C=ON"
  has bmi2 && args="$args -DGGML_BMI2=ON"
  if has avx512f && has avx512bw && has avx512vl && has avx512dq && has avx512cd; then
    args="$args -DGGML_AVX512=ON"
    has avx512vbmi && args="$args -DGGML_AVX512_VBMI=ON"
    has avx512_vnni && args="$args -DGGML_AVX512_VNNI=ON"
    has avx512_bf16 && args="$args -DGGML_AVX512_BF16=ON"
  fi
  has avx_vnni && args="$args -DGGML_AVX_VNNI=ON"
  echo "$args"
}

llama_ok() {
  $VPY - "$LLAMA_VERSION" <<'PY' 2>/dev/null
import sys, importlib.metadata as md
assert md.version("llama-cpp-python") == sys.argv[1]
import llama_cpp  # noqa: F401  (loads the shared library)
PY
}

if ! llama_ok; then
  export CMAKE_ARGS="${CMAKE_ARGS:-$(cmake_args_for_this_cpu)}"
  log "building llama-cpp-python $LLAMA_VERSION with CMAKE_ARGS=\"$CMAKE_ARGS\" (about 7 minutes the first time; pip caches the wheel)"
  .venv/bin/pip install -q "llama-cpp-python==$LLAMA_VERSION"
fi

# The stamp holds pyproject.toml's hash: a changed dependency list installs again, nothing else does.
stamp_ok() { [ "$(cat ".venv/.xiaoq-setup-$1" 2>/dev/null)" = "$(sha256sum pyproject.toml | cut -d' ' -f1)" ]; }
stamp() { sha256sum pyproject.toml | cut -d' ' -f1 >".venv/.xiaoq-setup-$1"; }

if ! stamp_ok serve || ! $VPY -c 'import xiaoq' 2>/dev/null; then
  log "installing XiaoQ (editable) and its runtime dependencies, with dense retrieval for knowledge bases"
  .venv/bin/pip install -q -e ".[dense]"
  stamp serve
fi

if [ "$MODE" = test ]; then
  if ! stamp_ok test; then
    log "installing the test tools (and OCR, which the knowledge-base tests read images with)"
    .venv/bin/pip install -q -e ".[test,dense,ocr]"
    stamp test
  fi

  # The OCR tests render Chinese text: they need a CJK font.
  if [ ! -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing Debian's fonts-wqy-zenhei for the OCR tests"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-zenhei >/dev/null
    else
      log "no CJK font: install Debian's 'fonts-wqy-zenhei' package for the OCR tests"
    fi
  fi

  if [ -z "${XIAOQ_SKIP_BROWSER:-}" ] && [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing Debian's chromium for the browser tests"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      log "no $CHROMIUM: install Debian's 'chromium' package to run the browser tests"
    fi
  fi

  if ! command -v espeak-ng >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing Debian's espeak-ng (text to speech; the voice tests speak with it)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
    else
      log "no espeak-ng: install Debian's 'espeak-ng' package for text to speech and the voice tests"
    fi
  fi

  # The store tests also run on a real PostgreSQL the suite starts itself (initdb in a temporary
  # folder, Unix socket only): Debian's server package.
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing Debian's postgresql (the store tests run on SQLite and on PostgreSQL)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
      log "no PostgreSQL server: install Debian's 'postgresql' package to run the PostgreSQL store tests"
    fi
  fi

  # npm ci again only when the lock file changed since the last install.
  if [ -f frontend/package.json ] && command -v npm >/dev/null \
     && { [ ! -f frontend/node_modules/.package-lock.json ] || [ frontend/package-lock.json -nt frontend/node_modules/.package-lock.json ]; }; then
    log "installing the front end's build tools"
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
  fi

  # Pyodide (the web UI's Python runner) is copied from npm into src/xiaoq/pyodide by npm ci's
  # postinstall; git never holds its 13 MB. Copy it again when only the copy is missing.
  if [ ! -f src/xiaoq/pyodide/pyodide.asm.wasm ] && [ -d frontend/node_modules/pyodide ] && command -v node >/dev/null; then
    node frontend/scripts/pyodide.mjs
  fi
fi

log "done: .venv/bin/xiaoq is ready ($MODE)"
