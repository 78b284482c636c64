#!/usr/bin/env bash
# Scenario S6 of SCENARIOS.md, day-2 data operations, as an operator would
# script them. The CLI is $CTL (keelctl, or etcdctl when the test checks the
# script itself against etcd), the server is ETCDCTL_ENDPOINTS, and a second,
# empty server MIRROR_ENDPOINT receives make-mirror's copy. Every step checks
# what an operator would look at; the first surprise ends the script with a
# message on stderr and exit 1. S6_DEFRAG=0 skips the defrag step. Every background process is stopped on exit.
set -euo pipefail

ctl() { "$CTL" "$@"; }
dest() { ETCDCTL_ENDPOINTS=$MIRROR_ENDPOINT "$CTL" "$@"; }
fail() { echo "S6 FAIL: $*" >&2; exit 1; }
expect() { # expect <what> <want> <got>
	[[ "$3" == "$2" ]] || fail "$1: want $(printf %q "$2"), got $(printf %q "$3")"
}
expect_match() { # expect_match <what> <extended regexp> <got>
	[[ "$3" =~ $2 ]] || fail "$1: $(printf %q "$3") does not match /$2/"
}
# Background commands run "$CTL" directly (not through ctl, whose subshell
# would be what $! names), so that cleanup stops the CLI itself.
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
# wait_lines <file> <n>: wait (10 s at most) until file has n lines.
wait_lines() {
	for _ in $(seq 100); do
		[[ -f "$1" && $(wc -l <"$1") -ge $2 ]] && return 0
		sleep 0.1
	done
	fail "$1 has $(wc -l <"$1") lines, want $2: $(cat "$1")"
}
revision() { ctl get / -w json | sed -E 's/.*"revision":([0-9]+).*/\1/'; }
work=$(mktemp -d)
trap 'cleanup; rm -rf "$work"' EXIT

echo "--- a Kubernetes-like key space"
for i in 1 2 3; do expect "put pod $i" OK "$(ctl put /registry/pods/default/p$i "pod $i")"; done
for i in $(seq 1 20); do ctl put /registry/events/default/e$i "event $i" >/dev/null; done
keys=$(ctl get / --prefix --keys-only | grep -c .)
expect "keys under /" 23 "$keys"
expect "first key" /registry/events/default/e1 "$(ctl get / --prefix --keys-only --limit 1 | head -1)"

echo "--- put, get, watch, del"
expect "put /name" OK "$(ctl put /name wang)"
expect "get /name" $'/name\nwang' "$(ctl get /name)"
from=$(revision)
"$CTL" watch /name --rev "$from" >"$work/watch" 2>&1 &
pids+=($!)
ctl put /name li >/dev/null
expect "del /name" 1 "$(ctl del /name)"
wait_lines "$work/watch" 5
expect "watch /name" $'PUT\n/name\nwang\nPUT\n/name\nli\nDELETE\n/name' "$(head -8 "$work/watch")"
expect "get /name after del" "" "$(ctl get /name)"

echo "--- drop the stale events"
expect "del events" 20 "$(ctl del /registry/events --prefix)"
expect "events left" 0 "$(ctl get /registry/events --prefix --count-only -w fields | sed -n 's/"Count" : //p')"

echo "--- compact and defragment"
rev=$(revision)
expect "compaction" "compacted revision $rev" "$(ctl compaction "$rev")"
out=$(ctl get /registry/pods/default/p1 --rev 2 2>&1 | tail -1 || true)
expect "read below the compaction" "Error: etcdserver: mvcc: required revision has been compacted" "$out"
if [[ ${S6_DEFRAG:-1} == 1 ]]; then
	expect_match "defrag --cluster" '^Finished defragmenting etcd member\[[^]]+\]\. took ' "$(ctl defrag --cluster)"
fi
expect_match "endpoint status" ' ENDPOINT .* IS LEADER .* RAFT INDEX ' "$(ctl endpoint status -w table | sed -n 2p)"
expect_match "endpoint health" ' is healthy: successfully committed proposal: took = ' "$(ctl endpoint health 2>&1)"

echo "--- alarms"
expect "alarm list" "" "$(ctl alarm list)"
expect "alarm disarm" "" "$(ctl alarm disarm)"

echo "--- leases"
lease=$(ctl lease grant 60 | sed -E 's/^lease ([0-9a-f]+) granted with TTL\(60s\)$/\1/')
expect_match "lease grant" '^[0-9a-f]+$' "$lease"
expect "put with lease" OK "$(ctl put /leased v --lease="$lease")"
expect "keep-alive --once" "lease $lease keepalived with TTL(60)" "$(ctl lease keep-alive --once "$lease")"
expect_match "timetolive --keys" "^lease $lease granted with TTL\(60s\), remaining\([0-9]+s\), attached keys\(\[/leased\]\)$" "$(ctl lease timetolive --keys "$lease")"
expect_match "lease list" "found 1 leases"$'\n'"$lease" "$(ctl lease list)"
expect "lease revoke" "lease $lease revoked" "$(ctl lease revoke "$lease")"
expect "key gone with its lease" "" "$(ctl get /leased)"

echo "--- lock and elect"
expect "lock with a command" held "$(ctl lock /locks/backup -- sh -c 'echo held')"
"$CTL" elect /elections/ops candidate-1 >"$work/elect" 2>&1 &
pids+=($!)
wait_lines "$work/elect" 1
expect_match "elect" '^/elections/ops/[0-9a-f]+$' "$(head -1 "$work/elect")"
"$CTL" elect -l /elections/ops >"$work/listen" 2>&1 &
pids+=($!)
wait_lines "$work/listen" 2
expect "elect -l" "candidate-1" "$(sed -n 2p "$work/listen")"

echo "--- txn"
ctl put /config/version 1 >/dev/null
out=$(printf 'value("/config/version") = "1"\n\nput /config/version 2\n\nget /config/version\n\n' | ctl txn)
expect "txn success" $'SUCCESS\n\nOK' "$out"
out=$(printf 'value("/config/version") = "1"\n\nput /config/version 3\n\nget /config/version\n\n' | ctl txn)
expect "txn failure" $'FAILURE\n\n/config/version\n2' "$out"
out=$(printf 'mod("/config/version") > "0"\n\nget /config/version\n\n\n' | ctl txn -i 2>&1)
expect_match "txn -i" $'compares:\n.*SUCCESS\n\n/config/version\n2$' "$out"

echo "--- make-mirror"
"$CTL" make-mirror --prefix /registry/ --dest-prefix /copy/ "$MIRROR_ENDPOINT" >"$work/mirror" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	n=$(dest get /copy/ --prefix --count-only -w fields | sed -n 's/"Count" : //p')
	[[ $n == 3 ]] && break
	sleep 0.1
done
expect "mirrored keys" $'/copy/pods/default/p1\n/copy/pods/default/p2\n/copy/pods/default/p3' \
	"$(dest get /copy/ --prefix --keys-only | grep .)"

echo "--- check perf (cut short with SIGINT; the verdict is still printed)"
out=$(timeout -s INT 5 "$CTL" check perf --load s --prefix /s6-perf/ 2>/dev/null || true)
# A slow machine gets etcdctl's other wording: "FAIL: Throughput too low: N writes/s".
expect_match "check perf" '(PASS: Throughput is|FAIL: Throughput too low:) [0-9]+ writes/s' "$out"
expect_match "check perf verdict" $'\n(PASS|FAIL)$' "$out"
expect "check perf cleaned up" 0 "$(ctl get /s6-perf/ --prefix --count-only -w fields | sed -n 's/"Count" : //p')"

echo "S6 OK"
