#!/usr/bin/env bash
# Builds the XiaoQ image and proves it runs: start it with a model volume, wait for the container's
# own HEALTHCHECK to turn healthy, stream a stored conversation's answer, stop it (SIGTERM), start a
# NEW container on the same data volume and check the conversation is still there. Also checks the
# container runs as a non-root user and carries no compilers or test tools, and prints the image size.
#
#   deploy/docker/check.sh [MODEL.gguf]
#
# MODEL: a GGUF file; default $XIAOQ_TEST_MODEL, else ../shared/models/get-qwen-gguf.sh's model.
# BASE: the base image; default: build xiaoq-base:bookworm from Debian's packages (make-base.sh),
# because these machines reach no image registry. Elsewhere: BASE=python:3.11-slim-bookworm.
# Needs docker (Debian's docker.io, run as root) and mmdebstrap. Not part of .ci/run: it builds a
# Debian root file system and an image (a few minutes on a warm machine, more on a cold one).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TAG=${TAG:-xiaoq:check}
NAME=xiaoq-check-$$
VOLUME=xiaoq-check-data-$$
PORT=${PORT:-18080}
KEY=check-$RANDOM$RANDOM
say() { printf '\033[1;34m[check]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[check] FAIL:\033[0m %s\n' "$*" >&2; exit 1; }

model=${1:-${XIAOQ_TEST_MODEL:-}}
if [ -z "$model" ] && [ -f ../shared/models/get-qwen-gguf.sh ]; then model=$(bash ../shared/models/get-qwen-gguf.sh); fi
[ -f "$model" ] || die "no model: pass a .gguf path (or set XIAOQ_TEST_MODEL)"
model=$(readlink -f "$model")

docker info >/dev/null 2>&1 || die "docker daemon not reachable (apt-get install docker.io; start dockerd)"
if [ -z "${BASE:-}" ]; then
  BASE=xiaoq-base:bookworm
  deploy/docker/make-base.sh "$BASE"
fi

cleanup() {
  docker rm -f "$NAME" "$NAME-2" >/dev/null 2>&1 || true
  docker volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  rm -rf "$secrets" deploy/docker/wheels/*.whl
}
secrets=$(mktemp -d)
trap cleanup EXIT

# The host's llama-cpp-python wheel (built once by setup.sh, kept in pip's cache) goes into the
# build context, so the image installs it instead of compiling llama.cpp again.
pip=${PIP:-$ROOT/.venv/bin/pip}
[ -x "$pip" ] || pip=/work/main/.venv/bin/pip
version=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)
rm -f deploy/docker/wheels/*.whl
wheel=$("$pip" cache list llama_cpp_python --format=abspath 2>/dev/null | grep -- "-$version-" | head -1 || true)
if [ -n "$wheel" ]; then
  cp "$wheel" deploy/docker/wheels/
  say "using the host's wheel $(basename "$wheel")"
else
  say "no cached llama-cpp-python $version wheel: the image compiles it (about 8 minutes)"
fi
# Every other dependency as wheels too, fetched by the host's pip (its index, proxy and
# certificates): the image build then needs no network (OFFLINE=1).
PIP_CONSTRAINT=deploy/docker/constraints.txt "$pip" wheel -q --wheel-dir deploy/docker/wheels --find-links deploy/docker/wheels \
  ".[postgres]" "setuptools>=77" wheel \
  >"$secrets/wheel.log" 2>&1 || { tail -20 "$secrets/wheel.log" >&2; die "pip wheel failed"; }
ls deploy/docker/wheels/llama_cpp_python-*.whl >/dev/null 2>&1 || die "the wheelhouse has no llama-cpp-python"


t0=$(date +%s)
say "building $TAG on BASE=$BASE"
docker build --network host --build-arg BASE="$BASE" --build-arg OFFLINE=1 -f deploy/docker/Dockerfile -t "$TAG" . >"$secrets/build.log" 2>&1 \
  || { tail -40 "$secrets/build.log" >&2; die "docker build failed"; }
say "built in $(( $(date +%s) - t0 )) s; image size: $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')"

say "runtime image: user and tools"
user=$(docker run --rm --entrypoint id "$TAG" -u)
[ "$user" != 0 ] || die "the container runs as root"
tools=$(docker run --rm --entrypoint sh "$TAG" -c 'for t in gcc cc c++ cmake make pytest pip; do command -v $t; done; true')
[ -z "$tools" ] || die "build or test tools in the runtime image: $tools"
say "uid $user; no gcc/cmake/make/pytest/pip"

# The API key as a file (a Docker/compose secret), never in the environment or the command line.
printf '%s\n' "$KEY" >"$secrets/api_key"
chmod 644 "$secrets/api_key"
docker volume create "$VOLUME" >/dev/null
run() {  # run NAME: XiaoQ on the data volume, the model read-only, the port on loopback only
  docker run -d --name "$1" -p "127.0.0.1:$PORT:8000" \
    -v "$VOLUME:/data" -v "$(dirname "$model"):/models:ro" -v "$secrets/api_key:/run/secrets/xiaoq_api_key:ro" \
    -e XIAOQ_MODEL="/models/$(basename "$model")" -e XIAOQ_API_KEY_FILE=/run/secrets/xiaoq_api_key \
    -e XIAOQ_ALLOWED_HOSTS=localhost,127.0.0.1 -e XIAOQ_CTX=2048 -e XIAOQ_PARALLEL=2 \
    "$TAG" serve >/dev/null
}
wait_healthy() {  # the image's own HEALTHCHECK decides
  local status i
  for i in $(seq 1 120); do
    status=$(docker inspect -f '{{.State.Health.Status}}' "$1")
    [ "$status" = healthy ] && return 0
    [ "$(docker inspect -f '{{.State.Running}}' "$1")" = true ] || { docker logs "$1" >&2; die "$1 exited"; }
    sleep 1
  done
  docker logs "$1" >&2
  die "$1 not healthy after 120 s (status $status)"
}
api() { curl -sS --fail-with-body -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' "$@"; }

t0=$(date +%s)
run "$NAME"
wait_healthy "$NAME"
say "healthy in $(( $(date +%s) - t0 )) s: $(curl -sS "http://127.0.0.1:$PORT/health")"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/api/conversations")
[ "$code" = 401 ] || die "no key: expected 401, got $code"

conv=$(api -X POST "http://127.0.0.1:$PORT/api/conversations" -d '{"title":"docker check"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
api -N "http://127.0.0.1:$PORT/api/conversations/$conv/messages" -d '{"content":"用一句话介绍你自己","max_tokens":48}' >"$secrets/stream.txt"
tokens=$(grep -c '"token"' "$secrets/stream.txt" || true)
grep -q '"done": *true' "$secrets/stream.txt" || { cat "$secrets/stream.txt" >&2; die "the stream did not finish"; }
answer=$(python3 - "$secrets/stream.txt" <<'PY'
import json, sys
text = ""
for line in open(sys.argv[1], encoding="utf-8"):
    if line.startswith("data: "):
        event = json.loads(line[6:])
        text += event.get("token", "")
print(text.replace("\n", " ")[:120])
PY
)
say "streamed $tokens token events: $answer"

t0=$(date +%s)
docker stop -t 20 "$NAME" >/dev/null
status=$(docker inspect -f '{{.State.ExitCode}}' "$NAME")
say "stopped in $(( $(date +%s) - t0 )) s, exit status $status"
[ "$status" = 0 ] || { docker logs "$NAME" >&2; die "exit status $status after SIGTERM"; }
docker rm "$NAME" >/dev/null

run "$NAME-2"
wait_healthy "$NAME-2"
kept=$(api "http://127.0.0.1:$PORT/api/conversations/$conv" | python3 -c 'import json,sys;m=json.load(sys.stdin)["messages"];print(len(m), m[-1]["status"], len(m[-1]["content"]))')
say "after a new container on the same volume: messages, last status, last length = $kept"
[ "${kept%% *}" = 2 ] || die "the conversation did not survive: $kept"
docker stop -t 20 "$NAME-2" >/dev/null
say "OK: image $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')) builds, serves, streams and keeps its data"
