#!/bin/sh
# Totals the results of one or more Meson test logs (testlog.json) and
# prints the closing line CI reads: "N passed, N failed, N skipped".
set -eu
passed=0 failed=0 skipped=0
for log in "$@"; do
    [ -f "$log" ] || { echo "no test log: $log" >&2; failed=$((failed + 1)); continue; }
    p=$(grep -c '"result": "OK"' "$log" || true)
    s=$(grep -c '"result": "SKIP"' "$log" || true)
    t=$(grep -c '"result":' "$log" || true)
    passed=$((passed + p)) skipped=$((skipped + s))
    failed=$((failed + t - p - s))
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
