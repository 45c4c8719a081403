#!/usr/bin/env bash
# deploy/build.sh DOCKERFILE IMAGE — build an image from the repository root with `docker build`
# when a Docker engine answers, else with `buildah bud` (used by `make image`, `make image-cuda`
# and `make image-test`).
#
# Environment: ENGINE=docker|buildah (default: docker when `docker info` answers),
# BUILDAH_STORAGE_DRIVER (vfs), BUILDAH_ISOLATION (chroot), PULL (buildah --pull: false = pull
# the base only when missing; never = local images only).
#
# A pip certificate bundle configured on the host (PIP_CERT or `pip config get global.cert`, as
# behind a TLS-intercepting proxy) goes to the build as the secret `pip_cert` (mounted for the
# pip step only, never stored in the image).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DOCKERFILE IMAGE" >&2; exit 2; }
dockerfile=$1
image=$2
cd "$(dirname "$0")/.."

engine=${ENGINE:-}
if [ -z "$engine" ]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker; else engine=buildah; fi
fi

secret=()
cert=${PIP_CERT:-$( (python3 -m pip config get global.cert || pip config get global.cert) 2>/dev/null || true)}
if [ -n "$cert" ] && [ -f "$cert" ]; then secret=(--secret "id=pip_cert,src=$(realpath "$cert")"); fi

if [ "$engine" = docker ]; then
    set -x
    exec docker build ${secret[@]+"${secret[@]}"} -f "$dockerfile" -t "$image" .
fi

command -v buildah >/dev/null || {
    echo "no Docker engine answers and buildah is not installed (apt-get install buildah)" >&2
    exit 1
}
base=$(sed -n 's/^ARG [A-Z_]*IMAGE=//p' "$dockerfile" | head -1)
standin=$(buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-vfs}" inspect --type image \
    --format '{{index .Docker.Config.Labels "org.rnnserve.stand-in"}}' "$base" 2>/dev/null || true)
if [ -n "$standin" ] && [ "$standin" != "<no value>" ]; then
    echo "warning: $base in local storage is make image-test's stand-in ($standin)," \
        "not the published image" >&2
fi
set -x
buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-vfs}" bud \
    --isolation "${BUILDAH_ISOLATION:-chroot}" --format docker --pull="${PULL:-false}" \
    ${secret[@]+"${secret[@]}"} -f "$dockerfile" -t "$image" .
