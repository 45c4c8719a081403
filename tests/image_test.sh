#!/usr/bin/env bash
# `make image-test`: build the real Dockerfile and run the image, with no Docker engine and no
# registry. A Debian bookworm minbase + python3 root filesystem (debootstrap) stands in for the
# Dockerfile's base image and is committed under its name; buildah builds the Dockerfile on it;
# podman runs the image as Kubernetes would (read-only root, no capabilities, non-root); the host's
# client waits for grpc.health.v1 SERVING and parses an utterance; SIGTERM must drain and exit 0.
#
# Needs root, buildah, podman, runc and debootstrap (installed with apt-get when missing).
# Environment: PY (host python with the client), IMAGE, DOCKERFILE, DEBIAN_MIRROR, KEEP_BASE=0
# (drop the stand-in base at the end, so the next run debootstraps again).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
IMAGE=${IMAGE:-localhost/rnnserve:image-test}
DOCKERFILE=${DOCKERFILE:-Dockerfile}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEEP_BASE=${KEEP_BASE:-1}
WORK=build/image-test
RUNC=/usr/sbin/runc
# vfs + chroot isolation: what works as root on this kind of machine (no overlay, no user namespaces)
BUILDAH=(buildah --storage-driver vfs)
PODMAN=(podman --storage-driver vfs)
NAME=rnnserve-image-test-$$

START=$(date +%s.%N)
LAST=$START
step() { # step "what was done": print the time since the previous step and since the start
    local now
    now=$(date +%s.%N)
    printf '[image-test] %6.1f s  (total %6.1f s)  %s\n' \
        "$(echo "$now - $LAST" | bc)" "$(echo "$now - $START" | bc)" "$*"
    LAST=$now
}
fail() {
    echo "[image-test] FAIL: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root (buildah vfs storage and chroot isolation need it)"
missing=()
for tool in buildah podman debootstrap bc; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ -x "$RUNC" ] || missing+=(runc)
if ((${#missing[@]})); then
    echo "[image-test] installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman runc debootstrap bc >/dev/null
fi
[ -x "$PY" ] || fail "no $PY (run make install)"
step "tools ready: $(buildah --version), $(podman --version)"

# --- 1. the stand-in base image, under the name the Dockerfile's FROM uses -------------------
mkdir -p "$WORK"
BASE=$(sed -n 's/^ARG [A-Z_]*IMAGE=//p' "$DOCKERFILE" | head -1)
[ -n "$BASE" ] || fail "$DOCKERFILE has no 'ARG ..._IMAGE=...' default"
# The python slim base has Python; NVIDIA's CUDA base has none (Dockerfile.cuda installs it).
case $BASE in
*python*) STANDIN_PACKAGES=${STANDIN_PACKAGES:-python3,python3-venv,ca-certificates} ;;
*) STANDIN_PACKAGES=${STANDIN_PACKAGES:-ca-certificates} ;;
esac
if "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
    step "base image $BASE already in local storage"
else
    rm -rf "$WORK/rootfs" "$WORK/base.tar"
    debootstrap --variant=minbase --include="$STANDIN_PACKAGES" \
        bookworm "$WORK/rootfs" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log"; fail "debootstrap"; }
    step "debootstrap --variant=minbase bookworm + $STANDIN_PACKAGES"
    # As in the official python slim image: `python` on PATH; no apt lists, docs or caches.
    if [ -x "$WORK/rootfs/usr/bin/python3" ]; then
        ln -sf /usr/bin/python3 "$WORK/rootfs/usr/local/bin/python"
    fi
    rm -rf "$WORK"/rootfs/var/lib/apt/lists/* "$WORK"/rootfs/var/cache/apt/*.bin \
        "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/usr/share/doc/* \
        "$WORK"/rootfs/usr/share/man/* "$WORK"/rootfs/var/log/*.log
    tar -C "$WORK/rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$WORK/base.tar" .
    ctr=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" add "$ctr" "$WORK/base.tar" / >/dev/null
    "${BUILDAH[@]}" config \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd /bin/bash \
        --label org.rnnserve.stand-in="debootstrap bookworm minbase + $STANDIN_PACKAGES (make image-test)" \
        "$ctr"
    "${BUILDAH[@]}" commit --quiet --format docker "$ctr" "$BASE" >/dev/null
    "${BUILDAH[@]}" rm "$ctr" >/dev/null
    rm -rf "$WORK/rootfs" "$WORK/base.tar"
    step "committed the stand-in as $BASE"
fi

# --- 2. the real Dockerfile -------------------------------------------------------------------
# deploy/build.sh: buildah bud, docker format (keeps HEALTHCHECK), vfs, chroot isolation.
ENGINE=buildah PULL=never deploy/build.sh "$DOCKERFILE" "$IMAGE" >"$WORK/build.log" 2>&1 ||
    { tail -30 "$WORK/build.log"; fail "image build (log: $WORK/build.log)"; }
step "buildah bud -f $DOCKERFILE -t $IMAGE"
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
base_size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$BASE")
printf '[image-test] image %s: %.1f MB (base %.1f MB + %.1f MB of rnnserve layers)\n' "$IMAGE" \
    "$(echo "$size / 1000000" | bc -l)" "$(echo "$base_size / 1000000" | bc -l)" \
    "$(echo "($size - $base_size) / 1000000" | bc -l)"

# --- 3. run it as the Deployment does ------------------------------------------------------------
read -r PORT METRICS_PORT < <("$PY" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
cleanup() {
    "${PODMAN[@]}" rm --force --time 0 "$NAME" >/dev/null 2>&1 || true
    if [ "$KEEP_BASE" = 0 ]; then "${BUILDAH[@]}" rmi "$IMAGE" "$BASE" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
# crun fails on this machine's cgroups: runc. Host network: the host's client reaches the ports.
# No systemd here to time the HEALTHCHECK: it is run by hand below (podman healthcheck run).
"${PODMAN[@]}" run --detach --name "$NAME" --runtime "$RUNC" --network host --health-interval disable \
    --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
    --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
    -e RNNSERVE_PORT="$PORT" -e RNNSERVE_METRICS_PORT="$METRICS_PORT" -e RNNSERVE_DRAIN_SECONDS=5 \
    "$IMAGE" >"$WORK/run.log" 2>&1 || { cat "$WORK/run.log" >&2; fail "podman run"; }
step "podman run (gRPC port $PORT, metrics port $METRICS_PORT)"

# Poll grpc.health.v1 from the host until SERVING (warm-up done), for at most 120 s.
deadline=$(($(date +%s) + 120))
until "$PY" -m client health --target "127.0.0.1:$PORT" --timeout 1 >/dev/null 2>&1; do
    if [ "$("${PODMAN[@]}" inspect --format '{{.State.Running}}' "$NAME")" != true ]; then
        "${PODMAN[@]}" logs "$NAME" >&2 || true
        fail "the container exited before turning SERVING"
    fi
    if (($(date +%s) > deadline)); then
        "${PODMAN[@]}" logs "$NAME" >&2 || true
        fail "no SERVING within 120 s"
    fi
    sleep 0.2
done
step "health SERVING (python -m client health, from the host)"

answer=$("$PY" -m client parse "what time is it?" --target "127.0.0.1:$PORT" --timeout 5)
echo "[image-test] $answer"
[[ $answer == *HassGetCurrentTime* ]] || fail "expected HassGetCurrentTime"
step "parse \"what time is it?\" -> HassGetCurrentTime"

"$PY" - "$METRICS_PORT" <<'EOF' || fail "metrics endpoint"
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
assert re.search(r"^rnnserve_ready 1\.0$", text, re.M), "rnnserve_ready is not 1"
assert re.search(r'^rnnserve_requests_total\{(?=.*code="OK")(?=.*Parse").*\} 1\.0$', text, re.M), text
EOF
step "metrics: rnnserve_ready 1, the Parse call counted"

# The image's own HEALTHCHECK (the same client, inside the container).
"${PODMAN[@]}" healthcheck run "$NAME" >/dev/null || fail "the image's HEALTHCHECK failed"
step "podman healthcheck run: healthy"

# What the image holds and who runs it.
"${PODMAN[@]}" exec --interactive "$NAME" python - <<'EOF' || fail "image contents"
import importlib.util, os, shutil
import onnxruntime
assert os.getuid() == 10001 and os.getgid() == 10001, (os.getuid(), os.getgid())
for absent in ("torch", "export", "pip"):
    assert importlib.util.find_spec(absent) is None, f"{absent} is in the image"
for tool in ("gcc", "cc", "g++", "make"):
    assert shutil.which(tool) is None, f"{tool} is in the image"
assert not os.access("/app", os.W_OK) and not os.access("/", os.W_OK), "writable root"
rss = next(line for line in open("/proc/1/status") if line.startswith("VmRSS")).split()[1]
print(f"[image-test] inside: uid 10001, no torch/pip/compilers, read-only root, "
      f"onnxruntime {onnxruntime.__version__} {onnxruntime.get_available_providers()}, "
      f"server RSS {int(rss) / 1024:.0f} MiB")
EOF
step "inside the container: user, contents, read-only root"

# SIGTERM: health turns NOT_SERVING, in-flight calls finish, exit 0.
"${PODMAN[@]}" kill --signal TERM "$NAME" >/dev/null
code=$("${PODMAN[@]}" wait "$NAME")
logs=$("${PODMAN[@]}" logs "$NAME" 2>&1)
[ "$code" = 0 ] || { echo "$logs" >&2; fail "exit status $code after SIGTERM"; }
grep -q '"msg": *"draining"' <<<"$logs" || { echo "$logs" >&2; fail "no 'draining' log line"; }
grep -q '"msg": *"stopped"' <<<"$logs" || { echo "$logs" >&2; fail "no 'stopped' log line"; }
! grep -q -i telemetry <<<"$logs" || { echo "$logs" >&2; fail "onnxruntime telemetry is on"; }
step "SIGTERM: drained, exit 0"
echo "[image-test] PASS"
