#!/usr/bin/env bash
# `make bench`: every scenario, rootbox side by side with its peers, as the unprivileged user;
# then one table of ratios against their targets (bench/results/summary.md) and a plot
# (bench/results/summary.png). See docs/PERFORMANCE.md.
#
#   bench/all.sh [SCENARIO...]     (default: all; make bench builds the release binaries first)
#
# As root on Debian, the peers are installed from Debian's packages first.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(runtime image exec concurrent monitor unpack commit pull limits)

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    pkgs=(hyperfine crun runc bubblewrap podman conmon uidmap slirp4netns passt umoci skopeo
        gnuplot-nox fuse-overlayfs busybox-static bc)
    missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "+ apt-get install ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" </dev/null >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -q "${missing[@]}" </dev/null >/dev/null; } \
            || echo "bench: could not install ${missing[*]}: those peers will be reported as skipped" >&2
    fi
    id -u "${ROOTBOX_TEST_USER:-rbtest}" >/dev/null 2>&1 || "$HERE/../tests/setup-root.sh"
fi

failed=()
for s in "${SCENARIOS[@]}"; do
    echo
    echo "======== bench/$s.sh"
    "$HERE/$s.sh" || failed+=("$s")
done
echo
echo "======== summary (bench/results/summary.md)"
python3 "$HERE/summary.py"
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench: failed: ${failed[*]}" >&2
    exit 1
fi
