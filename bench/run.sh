#!/bin/sh
# Runs every benchmark program in BUILD/bench (default build) with its
# default arguments, from the repository root, and prints their output.
# Benchmarks print figures beside their baselines; none of them passes or
# fails. Extra arguments (e.g. --quick) are passed to every program.
#   sh bench/run.sh [BUILD] [ARGS...]
B=${1:-build}
[ $# -gt 0 ] && shift
echo "benchmarks from $B on $(uname -sr), nproc $(nproc), $(date -u '+%Y-%m-%d %H:%M UTC')"
run_one() {
	b=$1
	shift
	[ -x "$b" ] || return 0
	echo
	echo "=== $(basename "$b") $*"
	start=$(date +%s)
	"$b" "$@"
	rc=$?
	end=$(date +%s)
	case $rc in
	0) echo "--- $(basename "$b"): $((end - start)) s" ;;
	77) echo "--- $(basename "$b"): skipped" ;;
	*) echo "--- $(basename "$b"): exit $rc after $((end - start)) s" ;;
	esac
}
for b in "$B"/bench/bench_*; do
	case "$b" in *.d | *.o) continue ;; esac
	# The live-policy and sampling benchmarks run last (below).
	case "$b" in */bench_live_policies | */bench_sampling) continue ;; esac
	[ -x "$b" ] || continue
	echo
	echo "=== $(basename "$b") $*"
	start=$(date +%s)
	# Extra arguments go only to programs that take the common options.
	if [ $# -gt 0 ] && "$b" --help 2>/dev/null | grep -q -- --quick; then
		"$b" "$@"
	else
		"$b"
	fi
	rc=$?
	end=$(date +%s)
	case $rc in
	0) echo "--- $(basename "$b"): $((end - start)) s" ;;
	77) echo "--- $(basename "$b"): skipped" ;;
	*) echo "--- $(basename "$b"): exit $rc after $((end - start)) s" ;;
	esac
done
# Policies on live regions and the cost of sampling (issue 3); long.
run_one "$B/bench/bench_live_policies" "$@"
run_one "$B/bench/bench_sampling" "$@"
