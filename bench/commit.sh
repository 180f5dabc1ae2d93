#!/usr/bin/env bash
# Commit of a container with many changed files: `rootbox commit` vs `podman commit`, as the
# unprivileged user. Each container (from the same busybox image) first writes
# BENCH_FILES (default 5000) small files and changes and deletes some of the image's; the
# commit is then timed, BENCH_RUNS times (default 5), alternating, each of a container of its
# own made before the timing.
#
#   bench/commit.sh            (make bench runs it)
#
# Target: no slower than podman commit (rootbox/podman <= 1).
set -euo pipefail
NAME=commit
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS=${BENCH_RUNS:-5}
FILES=${BENCH_FILES:-5000}

busybox_image
IMG=bench/busybox:1
SCRIPT="mkdir -p /data && i=0; while [ \$i -lt $FILES ]; do echo \$i > /data/f\$i; i=\$((i+1)); done; echo x >> /etc/profile; rm -f /bin/vi; touch /ready; sleep 3600"
# make_ctr ENGINE: a running container with the changes made; prints its id.
make_ctr() {
    local id
    if [ "$1" = rootbox ]; then
        id=$(as_user "$RB" run -d --network none "$IMG" sh -c "$SCRIPT")
        until as_user "$RB" exec "$id" test -e /ready 2>/dev/null; do sleep 0.1; done
    else
        id=$(as_user $PODMAN run -d --network none "localhost/$IMG" sh -c "$SCRIPT")
        until as_user $PODMAN exec "$id" test -e /ready 2>/dev/null; do sleep 0.1; done
    fi
    echo "$id"
}
ms() { date +%s%N; }
rb_times=() pm_times=()
for r in $(seq "$RUNS"); do
    id=$(make_ctr rootbox)
    t0=$(ms)
    as_user "$RB" commit "$id" "bench/commit:$r" >/dev/null
    t1=$(ms)
    rb_times+=($(((t1 - t0) / 1000000)))
    as_user "$RB" rm -f "$id" >/dev/null
    if [ -z "$PODMAN_ERROR" ]; then
        id=$(make_ctr podman) || { PODMAN_ERROR="podman run -d failed"; continue; }
        t0=$(ms)
        as_user $PODMAN commit -q "$id" "localhost/bench/commit:$r" >/dev/null
        t1=$(ms)
        pm_times+=($(((t1 - t0) / 1000000)))
        as_user $PODMAN rm -f -t 0 "$id" >/dev/null 2>&1 || true
    fi
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
extra="{\"rootbox\": {\"value\": $(median "${rb_times[@]}"), \"unit\": \"ms\"}"
if [ ${#pm_times[@]} -gt 0 ]; then
    extra+=", \"podman\": {\"value\": $(median "${pm_times[@]}"), \"unit\": \"ms\"}"
else
    skip podman "${PODMAN_ERROR:-no podman result}"
fi
extra+="}"
echo "rootbox commit: ${rb_times[*]} ms; podman commit: ${pm_times[*]:-} ms"
EXTRA_JSON=$extra report "commit of a container with $FILES new files (median of $RUNS)" "rootbox/podman<=1"
