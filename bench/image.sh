#!/usr/bin/env bash
# `run --rm IMAGE true` from a local busybox image: rootbox vs podman (rootless), alternating
# in one hyperfine run, as the unprivileged user: network none, and a private network through
# slirp4netns for both (podman 4.3 has no pasta), plus rootbox's default private network
# (pasta) for reference.
#
#   bench/image.sh            (make bench runs it; BENCH_RUNS, default 20)
#
# podman runs with `--runtime runc --cgroup-manager cgroupfs` (crun refuses hybrid cgroup
# hosts such as these); when podman cannot run here its error is recorded instead.
set -euo pipefail
NAME=image
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${BENCH_RUNS:=20}"

echo "preparing: a busybox image (rootbox import, podman import of the same tarball)"
busybox_image
IMG=bench/busybox:1
add rootbox-none "$RB run --rm --network none $IMG true"
[ -z "$PODMAN_ERROR" ] && add podman-none "$PODMAN run --rm --network none localhost/$IMG true"
if command -v slirp4netns >/dev/null; then
    add rootbox-slirp4netns "$RB run --rm --network slirp4netns $IMG true"
    [ -z "$PODMAN_ERROR" ] && add podman-slirp4netns "$PODMAN run --rm --network slirp4netns localhost/$IMG true"
else
    skip rootbox-slirp4netns "slirp4netns is not installed"
fi
command -v pasta >/dev/null && add rootbox-pasta "$RB run --rm --network pasta $IMG true"
[ -n "$PODMAN_ERROR" ] && skip podman-none "$PODMAN_ERROR" && skip podman-slirp4netns "$PODMAN_ERROR"
check_and_time host
report "run --rm IMAGE true (busybox image): rootbox vs podman" \
    "rootbox-none/podman-none<=0.2" "rootbox-slirp4netns/podman-slirp4netns<=0.2"
