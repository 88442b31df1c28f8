#!/bin/sh
# The zmigrate tool: help, flag errors (exit 2, a message naming the
# flag), --json results, a demo, and a file: save and restore.
set -u
zm=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
check() { # description, then a command that must succeed
    what=$1; shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fail=1; fi
}
expect_usage() { # flag args..., then the text the error must contain
    text=$1; shift
    "$zm" "$@" >"$dir/out" 2>"$dir/err"
    status=$?
    if [ $status -eq 2 ] && grep -q -- "$text" "$dir/err"; then
        echo "ok: zmigrate $* -> exit 2, '$text'"
    else
        echo "FAILED: zmigrate $*: exit $status, stderr:"; cat "$dir/err"
        fail=1
    fi
}

check "--help names every command" sh -c \
    "'$zm' --help | grep -q 'zmigrate send --to URI' &&
     '$zm' --help | grep -q 'EXIT STATUS'"
check "--version" sh -c "'$zm' --version | grep -q '^zmigrate [0-9]'"
expect_usage "unknown command" frobnicate
# `zmigrate vm` runs zmigrate-vm: the one beside it in the build tree,
# or the one $ZMIGRATE_VM names.
check "vm: runs zmigrate-vm, which has its own help" sh -c \
    "'$zm' vm --help | grep -q 'zmigrate vm, zmigrate-vm'"
check "vm: a ZMIGRATE_VM that is not there: exit 1, says so" sh -c \
    "ZMIGRATE_VM='$dir/none' '$zm' vm --help >/dev/null 2>'$dir/vmerr';
     [ \$? -eq 1 ] && grep -q 'cannot run $dir/none (ZMIGRATE_VM)' '$dir/vmerr'"
expect_usage "send needs --to" send
expect_usage "--compression: unknown codec 'brotli'" send --to unix:/x \
    --compression brotli
expect_usage "--multifd-channels" send --to unix:/x --multifd-channels 0
expect_usage "--guest-ram" send --to unix:/x --guest-ram 12k3
expect_usage "--max-bandwidth" send --to unix:/x --max-bandwidth fast
expect_usage "--downtime-limit" send --to unix:/x --downtime-limit -3ms
expect_usage "--workload" send --to unix:/x --workload sleepy
expect_usage "--offload: no backend 'qat'" send --to unix:/x --offload qat
expect_usage "--compress-threads" send --to unix:/x --compress-threads 0
expect_usage "recv needs --listen" recv
expect_usage "unexpected argument" recv --listen unix:/x extra

# A refused connection is a failure (1), with the reason.
"$zm" send --to "unix:$dir/nobody.sock" --guest-ram 4M --quiet \
    >"$dir/out" 2>&1
check "send to nobody exits 1 with the reason" sh -c \
    "[ $? -eq 1 ] && grep -q 'nobody.sock' '$dir/out'"

# The reason, in JSON, stays valid JSON whatever the path holds: a quote, a
# backslash, a tab, a byte that is not UTF-8.
odd="$dir/a\"b\\c	d$(printf '\377')e"
"$zm" send --to "unix:$odd/x.sock" --guest-ram 4M --json --quiet \
    >"$dir/odd.json" 2>/dev/null
check "send --json to an odd path exits 1" [ $? -eq 1 ]
if command -v python3 >/dev/null 2>&1; then
    check "its JSON parses and keeps the path" python3 -c "
import json
r = json.loads(open('$dir/odd.json', 'rb').readlines()[-1])
assert r['status'] == 'failed', r
assert 'a\"b\\\\c\td\ufffde/x.sock' in r['error'], r['error']"
fi

# A level out of range: the library's message names the range.
"$zm" send --to "unix:$dir/x.sock" --compression zstd \
    --compression-level 30 --guest-ram 4M --quiet >"$dir/out" 2>&1
check "zstd level 30 names 1..19" grep -q "1..19" "$dir/out"

# demo: both sides complete, as JSON, and the RAM verified.
"$zm" demo --guest-ram 64M --vcpus 1 --dirty-rate 20M --json --quiet \
    >"$dir/demo.json" 2>"$dir/demo.err"
status=$?
check "demo exits 0" [ $status -eq 0 ]
check "demo: two JSON results, both completed" sh -c \
    "[ \$(grep -c '\"status\": \"completed\"' '$dir/demo.json') -eq 2 ]"
check "demo JSON has QEMU's names" sh -c \
    "grep -q '\"downtime\": ' '$dir/demo.json' &&
     grep -q '\"dirty-sync-count\": ' '$dir/demo.json' &&
     grep -q '\"normal-bytes\": ' '$dir/demo.json'"
if command -v python3 >/dev/null 2>&1; then
    check "demo JSON parses" python3 -c "
import json, sys
for line in open('$dir/demo.json'):
    json.loads(line)"
    check "demo: the sender's rounds, one a round, add up to its pages" \
        python3 -c "
import json
r = [json.loads(l) for l in open('$dir/demo.json')]
s = [x for x in r if x['side'] == 'send'][0]
rounds = s['rounds']
assert len(rounds) == s['iterations'], (len(rounds), s['iterations'])
assert [x['final'] for x in rounds] == [False] * (len(rounds) - 1) + [True]
pages = sum(x['pages'] for x in rounds)
assert pages == s['ram']['normal'] + s['ram']['duplicate'], pages"
fi

# Offload: a failing emulated device; the migration completes, verified,
# and the JSON counts what the device did and what it failed.
"$zm" demo --guest-ram 32M --vcpus 1 --dirty-rate 10M --json --quiet \
    --offload emulated:fail-every=4,latency=100us >"$dir/off.json" 2>&1
check "offload: a failing device, the demo completes and verifies" sh -c \
    "[ \$(grep -c '\"status\": \"completed\"' '$dir/off.json') -eq 2 ]"
check "offload: the sender's JSON counts offloaded and failed batches" \
    grep -q '"offload": {"offloaded": [1-9][0-9]*, "fallbacks": [0-9]*, "failures": [1-9]' \
    "$dir/off.json"
"$zm" send --to "file:$dir/bad.zm" --offload emulated:colour=red \
    --guest-ram 4M --quiet >"$dir/out" 2>&1
status=$?
check "offload: an unknown backend key fails the run, naming it" sh -c \
    "[ $status -eq 1 ] && grep -q \"unknown key 'colour'\" '$dir/out'"

# --compression auto, with the cpu pool too: completes, verified, and the
# JSON says which methods carried the pages and what they cost.
for extra in "" "--offload cpu --compress-threads 1"; do
    # shellcheck disable=SC2086
    "$zm" demo --guest-ram 64M --vcpus 1 --dirty-rate 10M --json --quiet \
        --compression auto --multifd-channels 4 $extra >"$dir/auto.json" 2>&1
    check "auto ${extra:-on the channels}: the demo completes and verifies" \
        sh -c "[ \$(grep -c '\"status\": \"completed\"' '$dir/auto.json') -eq 2 ]"
    check "auto ${extra:-on the channels}: methods and timeline in the JSON" \
        python3 -c "
import json, sys
s = [json.loads(l) for l in open(sys.argv[1]) if '\"side\": \"send\"' in l][0]
a = s['compression-auto']
assert [m['method'] for m in a['methods']][:2] == ['none', 'lz4:1'], a
assert sum(m['raw-bytes'] for m in a['methods']) == 4096 * s['ram']['normal']
assert all(p['method'] in [m['method'] for m in a['methods']]
           for p in a['timeline'])" "$dir/auto.json"
done
expect_usage "--zero-percent" send --to unix:/x --zero-percent 101
expect_usage "--data: 'noise'" send --to unix:/x --data noise
"$zm" demo --guest-ram 16M --vcpus 1 --workload idle --data random \
    --zero-percent 50 --json --quiet >"$dir/rnd.json" 2>&1
check "--data random --zero-percent 50: half the pages zero, the rest raw" \
    python3 -c "
import json, sys
s = [json.loads(l) for l in open(sys.argv[1]) if '\"side\": \"send\"' in l][0]
r = s['ram']
assert 0.35 < r['duplicate'] / (r['normal'] + r['duplicate']) < 0.65, r
assert s['compression-ratio'] < 1.01, s" "$dir/rnd.json"

# file: save, then restore.
"$zm" send --to "file:$dir/guest.zm" --guest-ram 32M --workload writer \
    --compression lz4 --verify --json --quiet >"$dir/save.json" 2>&1
check "send to a file completes" grep -q '"completed"' "$dir/save.json"
"$zm" recv --from "file:$dir/guest.zm" --json --quiet \
    >"$dir/restore.json" 2>&1
check "recv --from the file completes, verified" \
    grep -q '"completed"' "$dir/restore.json"
head -c 1000 "$dir/guest.zm" >"$dir/short.zm"
"$zm" recv --from "file:$dir/short.zm" --quiet >"$dir/out" 2>&1
check "a truncated file fails with exit 1" sh -c \
    "[ $? -eq 1 ] && grep -q 'ends' '$dir/out'"

# bench: one row per built method, a number in every column.
"$zm" bench --guest-ram 16M --vcpus 1 --dirty-rate 10M >"$dir/bench.md" \
    2>"$dir/bench.err"
check "bench exits 0" [ $? -eq 0 ]
check "bench: a row for every method" sh -c \
    "[ \$(grep -cE '^\| (none|lz4|zstd|zlib|deflate) \| [0-9]+ \|' \
       '$dir/bench.md') -eq 5 ]"

exit $fail
