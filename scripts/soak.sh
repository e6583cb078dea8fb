#!/bin/sh
# make soak: runs the concurrency-heavy tests over and over, each round with
# new random traffic (HMMAP_TEST_SEED=round), until SECONDS have passed.
# Races show up as a rare wrong word or a crash, which one run of `make
# test` may not meet. A failing run keeps its log and the soak goes on; the
# last line is "N passed, N failed" over the runs, and the exit status is
# non-zero if any failed.
#
#   sh scripts/soak.sh [BUILD [SECONDS [TEST...]]]
B=${1:-build}
secs=${2:-1800}
[ $# -ge 2 ] && shift 2 || shift $#
tests=${*:-"test_integrity test_tiers test_bind test_evacuate test_tier_model test_coherence test_budget test_faults test_hybrid test_sampling test_unmap test_model test_fault_model test_remote_model"}
case $secs in
'' | *[!0-9]*)
	echo "soak: SECONDS must be a whole number, not '$secs'" >&2
	exit 2
	;;
esac
for t in $tests; do
	if [ ! -x "$B/tests/$t" ]; then
		echo "soak: $B/tests/$t is not built (make, or make B=$B all)" >&2
		exit 2
	fi
done
export HMMAP_BUILD="$B"
logs=${TMPDIR:-/tmp}/hmmap-soak.$$
mkdir -p "$logs" || exit 1
end=$(($(date +%s) + secs))
passed=0 failed=0 round=0 child=
trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait; echo "soak: stopped; logs in $logs"; exit 130' INT TERM
echo "soak: $tests"
echo "soak: until $(date -d "@$end" '+%H:%M:%S'); logs of failed runs in $logs"
while [ "$(date +%s)" -lt "$end" ]; do
	round=$((round + 1))
	for t in $tests; do
		[ "$(date +%s)" -lt "$end" ] || break
		log="$logs/$t.seed$round.log"
		# In the background, so that a signal to the soak stops the test too.
		HMMAP_TEST_SEED=$round timeout -k 10 900 "$B/tests/$t" >"$log" 2>&1 &
		child=$!
		wait "$child"
		rc=$?
		f=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1 |
			sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
		if [ "$rc" = 0 ] || { [ "$rc" = 77 ] && [ "${f:-1}" = 0 ]; }; then
			passed=$((passed + 1))
			rm -f "$log"
		else
			failed=$((failed + 1))
			echo "soak: FAIL $t with HMMAP_TEST_SEED=$round (exit $rc): $log"
		fi
	done
	echo "soak: round $round done, $passed runs passed, $failed failed"
done
[ "$failed" = 0 ] && rmdir "$logs" 2>/dev/null
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
