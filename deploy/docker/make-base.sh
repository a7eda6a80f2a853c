#!/usr/bin/env bash
# Builds a Debian bookworm base image from Debian's packages alone (mmdebstrap + docker import), for
# machines that reach Debian's archive but no image registry. The Dockerfile's BASE argument takes
# it in place of the official python image:
#
#   deploy/docker/make-base.sh                  # -> image xiaoq-base:bookworm
#   docker build --build-arg BASE=xiaoq-base:bookworm -f deploy/docker/Dockerfile .
#
# It holds what both Dockerfile stages expect of a base: python3 with venv, libgomp1 (llama.cpp's
# OpenMP runtime), CA certificates and useradd. Documentation, man pages and locales are left out.
set -euo pipefail
TAG=${1:-xiaoq-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$TAG" >/dev/null 2>&1 && [ -z "${REBUILD:-}" ]; then
  echo "[base] $TAG exists (REBUILD=1 to make it again)" >&2
  exit 0
fi
command -v mmdebstrap >/dev/null || { echo "[base] needs mmdebstrap: apt-get install -y mmdebstrap" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "[base] mmdebstrap bookworm from $MIRROR" >&2
mmdebstrap --variant=apt --include=python3,python3-venv,libgomp1,ca-certificates,passwd \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$work/rootfs.tar" "$MIRROR" >&2
docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' "$work/rootfs.tar" "$TAG" >/dev/null
echo "[base] $TAG: $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')" >&2
