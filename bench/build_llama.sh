#!/usr/bin/env bash
# Builds llama-server and llama-bench from the very llama.cpp source that XiaoQ runs: the copy
# vendored in the llama-cpp-python sdist of the version pyproject.toml pins, compiled with the
# same CPU flags setup.sh gives llama-cpp-python (GGML_NATIVE=OFF plus the SIMD extensions this
# CPU lists: a native x86 build can enable AMX and die with "Illegal instruction"). Comparing
# XiaoQ with a llama-server of another version or other flags would measure the build, not XiaoQ.
#
# The binaries are cached in ~/.cache/xiaoq/bench/llama.cpp-<version>/bin and reused; a stamp
# file records the flags, so changing CMAKE_ARGS rebuilds. Prints the bin directory on success.
#
#   bench/build_llama.sh                # build (or reuse) and print the bin dir
#   BENCH_JOBS=4 bench/build_llama.sh   # more compile jobs (default 2: the machine is shared)
#   LLAMA_SDIST=/path/llama_cpp_python-X.tar.gz bench/build_llama.sh   # no download
#   BENCH_NO_BUILD=1 bench/build_llama.sh  # print the bin dir if already built, else fail fast
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
log() { if [ -t 2 ]; then printf '\033[1;34m[build_llama]\033[0m %s\n' "$*" >&2; else printf '[build_llama] %s\n' "$*" >&2; fi; }

version=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' "$root/pyproject.toml")
[ -n "$version" ] || { log "cannot read the llama-cpp-python pin from pyproject.toml"; exit 1; }
cache="${XIAOQ_BENCH_CACHE:-$HOME/.cache/xiaoq/bench}/llama.cpp-$version"
bindir="$cache/bin"

# The same flag detection as setup.sh, taken from it verbatim so the two can never drift.
eval "$(sed -n '/^cmake_args_for_this_cpu() {/,/^}/p' "$root/setup.sh")"
cpu_args="${CMAKE_ARGS:-$(cmake_args_for_this_cpu)}"
args="$cpu_args -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
 -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF"
stamp="$version|$args"

if [ -x "$bindir/llama-server" ] && [ -x "$bindir/llama-bench" ] && [ "$(cat "$cache/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$bindir"; exit 0
fi

if [ -n "${BENCH_NO_BUILD:-}" ]; then log "not built yet and BENCH_NO_BUILD is set"; exit 1; fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # two bench runs at once wait for one build instead of racing
if [ -x "$bindir/llama-server" ] && [ -x "$bindir/llama-bench" ] && [ "$(cat "$cache/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$bindir"; exit 0
fi

src="$cache/src/llama_cpp_python-$version"
if [ ! -f "$src/vendor/llama.cpp/CMakeLists.txt" ]; then
  sdist="${LLAMA_SDIST:-}"
  if [ -z "$sdist" ]; then
    log "downloading the llama-cpp-python $version sdist"
    pip=${PIP:-"$root/.venv/bin/python -m pip"}
    [ -x "$root/.venv/bin/python" ] || pip="python3 -m pip"
    $pip download -q --no-deps --no-binary :all: -d "$cache/sdist" "llama-cpp-python==$version" >&2
    sdist=$(ls "$cache"/sdist/llama_cpp_python-"$version".tar.gz)
  fi
  rm -rf "$cache/src"; mkdir -p "$cache/src"
  tar -xzf "$sdist" -C "$cache/src"
fi

log "configuring llama.cpp $version with: $args"
# shellcheck disable=SC2086  # args is a list of -D flags
cmake -S "$src/vendor/llama.cpp" -B "$cache/build" -G Ninja $args >"$cache/configure.log" 2>&1 \
  || { log "cmake configure failed; see $cache/configure.log"; tail -20 "$cache/configure.log" >&2; exit 1; }
log "compiling llama-server and llama-bench with -j${BENCH_JOBS:-2} (several minutes on 2 cores)"
cmake --build "$cache/build" --target llama-server llama-bench -j"${BENCH_JOBS:-2}" >"$cache/build.log" 2>&1 \
  || { log "build failed; see $cache/build.log"; tail -30 "$cache/build.log" >&2; exit 1; }
mkdir -p "$bindir"
cp "$cache/build/bin/llama-server" "$cache/build/bin/llama-bench" "$bindir/"
echo "$stamp" >"$cache/stamp"
log "built into $bindir"
echo "$bindir"
