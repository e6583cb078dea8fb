#!/bin/sh
# Runs every test program in BUILD/tests (default build) from the repository
# root, each under a time limit, and ends with the total line
# "N passed, N failed, N skipped" summed from the programs' own closing lines.
B=${1:-build}
export HMMAP_BUILD="$B"
limit=${HMMAP_TEST_TIMEOUT:-600}
passed=0 failed=0 skipped=0 broken=""
for t in "$B"/tests/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	echo "=== $name"
	out=$(mktemp)
	timeout -k 10 "$limit" "$t" >"$out" 2>&1
	rc=$?
	cat "$out"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
	rm -f "$out"
	if [ -z "$line" ]; then
		echo "!!! $name ended without a summary (exit $rc)"
		failed=$((failed + 1))
		broken="$broken $name"
		continue
	fi
	p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
	f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
	s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + ${s:-0}))
	if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
		[ "$f" = 0 ] && failed=$((failed + 1))
		broken="$broken $name"
	fi
done
[ -n "$broken" ] && echo "failing programs:$broken"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
