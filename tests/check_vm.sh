#!/bin/sh
# zmigrate vm: help and flag errors, a bad kernel, "KVM is not available",
# a boot, a live migration of a 256 MiB 2-vCPU guest over a UNIX socket
# (the guest verifies its RAM on the destination and its heartbeat goes on
# without a gap), a guest that dirties faster than the link carries
# (max-iterations), a switchover the destination refuses (the source's
# guest runs on, its RAM intact), and a VM saved to a file and restored.
# Skips (77) without KVM or without the guest kernel.
set -u
zm=$1
guest=${2:-}
dir=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT
fail=0
check() { # description, then a command that must succeed
    what=$1; shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fail=1; fi
}
show() { # label, file: the file's tail, for the log of a failure
    echo "--- $1 ---"; tail -n 25 "$2"
}

if ! [ -c /dev/kvm ]; then
    echo "SKIP: KVM is not available: /dev/kvm does not exist"
    exit 77
fi
if ! (exec 3<>/dev/kvm) 2>/dev/null; then
    echo "SKIP: KVM is not available: /dev/kvm cannot be opened read-write"
    exit 77
fi
if [ -z "$guest" ] || ! [ -r "$guest" ]; then
    echo "SKIP: the guest kernel (vm/guest/zmguest.elf) was not built"
    exit 77
fi

# ---- help and flags ----
check "--help names zmigrate vm" sh -c "'$zm' --help | grep -q 'zmigrate vm'"
check "vm --help has the options and exit status" sh -c \
    "'$zm' vm --help | grep -q -- '--migrate-to URI' &&
     '$zm' vm --help | grep -q 'EXIT STATUS'"
"$zm" vm --ram 4G >"$dir/out" 2>"$dir/err"
check "--ram 4G: exit 2, names --ram" sh -c \
    "[ $? -eq 2 ] && grep -q -- '--ram' '$dir/err'"
"$zm" vm --vcpus 0 >"$dir/out" 2>"$dir/err"
check "--vcpus 0: exit 2" sh -c "[ $? -eq 2 ] && grep -q -- '--vcpus' '$dir/err'"
"$zm" vm --migrate-to "unix:$dir/r.sock" --dirty-ring 3000 >"$dir/out" 2>"$dir/err"
check "--dirty-ring 3000: exit 2, not a power of two" sh -c \
    "[ $? -eq 2 ] && grep -q 'not a power of two' '$dir/err'"
"$zm" vm --dirty-ring 4096 >"$dir/out" 2>"$dir/err"
check "--dirty-ring without --migrate-to: exit 2" sh -c \
    "[ $? -eq 2 ] && grep -q -- '--dirty-ring is for a source' '$dir/err'"
"$zm" vm --incoming "unix:$dir/p.sock" --mem-prealloc >"$dir/out" 2>"$dir/err"
check "--incoming --mem-prealloc without --ram: exit 2" sh -c \
    "[ $? -eq 2 ] && grep -q -- '--mem-prealloc with --incoming needs --ram' '$dir/err'"

# ---- a bad kernel is a clear error, never a crash ----
bad_kernel() { # description, file, text the error must contain
    "$zm" vm --kernel "$2" --run-for 1s >"$dir/out" 2>"$dir/err"
    status=$?
    if [ $status -eq 1 ] && grep -q "cannot load the kernel" "$dir/err" &&
        grep -q -- "$3" "$dir/err"; then
        echo "ok: $1"
    else
        echo "FAILED: $1: exit $status"; cat "$dir/err"; fail=1
    fi
}
printf 'this is not a kernel\n' >"$dir/text"
bad_kernel "a text file: not an ELF" "$dir/text" "not an ELF"
head -c 5000 "$guest" >"$dir/short.elf"
bad_kernel "a truncated ELF: a segment past the end of the file" \
    "$dir/short.elf" "past the end"
cp "$guest" "$dir/phoff.elf"
printf '\377\377\377\177' |
    dd of="$dir/phoff.elf" bs=1 seek=28 conv=notrunc 2>/dev/null
bad_kernel "e_phoff beyond the file" "$dir/phoff.elf" \
    "program headers at offset 2147483647"
bad_kernel "a 64-bit ELF: not i386" "$zm" "not a 32-bit"
bad_kernel "a missing file" "$dir/nothing.elf" "No such file"
"$zm" vm --kernel "$guest" --ram 2M --run-for 1s >"$dir/out" 2>"$dir/err"
check "a kernel larger than the RAM: does not fit" sh -c \
    "[ $? -eq 1 ] && grep -q 'does not fit in 2 MiB' '$dir/err'"

# ---- no KVM: the message says so (a mount namespace hides /dev/kvm) ----
if command -v unshare >/dev/null 2>&1 && : >"$dir/nokvm" &&
    unshare -m sh -c "mount --bind '$dir/nokvm' /dev/kvm" 2>/dev/null; then
    unshare -m sh -c "mount --bind '$dir/nokvm' /dev/kvm &&
        exec '$zm' vm --run-for 1s" >"$dir/out" 2>"$dir/err"
    check "without KVM: exit 1, 'KVM is not available'" sh -c \
        "[ $? -eq 1 ] && grep -q 'zmigrate vm: KVM is not available: /dev/kvm' \
            '$dir/err'"
else
    echo "skipped: the no-KVM message (no mount namespace here)"
fi

# ---- boot: the built guest by default, its serial on stdout ----
"$zm" vm --ram 64M --vcpus 1 --append "rate=10M hot=20" --run-for 2s \
    >"$dir/boot.out" 2>"$dir/boot.err"
status=$?
check "boot: runs 2 s and exits 0" [ $status -eq 0 ]
check "boot: the guest's boot line on stdout" \
    grep -q '^zmguest: boot ram=64M .*cpus=1' "$dir/boot.out"
check "boot: the guest takes a working set (hot=20)" \
    grep -q '^zmguest: hot=20 hot_writes=80' "$dir/boot.out"
check "boot: and beats with it" grep -q '^heartbeat 1 ' "$dir/boot.out"
[ $fail -eq 0 ] || { show "boot stdout" "$dir/boot.out";
                     show "boot stderr" "$dir/boot.err"; }

# Waits (up to $2 s) until file $1 has a line matching $3 while process
# $4 lives.
wait_for() {
    n=0
    while ! grep -q "$3" "$1" 2>/dev/null; do
        n=$((n + 1))
        if [ $n -gt $(($2 * 10)) ] || ! kill -0 "$4" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
}
# Waits (up to $2 s) for process $1 to end, else kills it; its status.
wait_end() {
    n=0
    while kill -0 "$1" 2>/dev/null && [ $n -lt $(($2 * 10)) ]; do
        sleep 0.1
        n=$((n + 1))
    done
    kill "$1" 2>/dev/null
    wait "$1"
}

# ---- live migration: 256 MiB, 2 vCPUs, zstd over 2 channels, verified ----
sock="$dir/m.sock"
"$zm" vm --incoming "unix:$sock" --ram 256M --mem-prealloc --vcpus 2 \
    --run-for 50s --json --quiet >"$dir/dst.out" 2>"$dir/dst.err" &
dst=$!
pids="$pids $dst"
n=0
while ! [ -S "$sock" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
# It listens only once its RAM is backed.
rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$dst/status" 2>/dev/null)
check "--mem-prealloc: the destination's 256 MiB resident before it listens" \
    [ "${rss:-0}" -ge 262144 ]
"$zm" vm --kernel "$guest" --ram 256M --vcpus 2 \
    --append "rate=100M exit_after_verify=1" \
    --migrate-to "unix:$sock" --migrate-after signal --compression zstd \
    --multifd-channels 2 --verify --json --quiet \
    >"$dir/src.out" 2>"$dir/src.err" &
src=$!
pids="$pids $src"
# Migrate once the guest has filled its RAM and beats.
if wait_for "$dir/src.out" 40 '^heartbeat 2 ' $src; then
    kill -USR2 $src
else
    echo "FAILED: the source guest did not beat twice in 40 s"; fail=1
fi
wait_end $src 40
src_status=$?
wait_end $dst 20
dst_status=$?
pids=""
check "migration: source exits 0" [ $src_status -eq 0 ]
check "migration: source's last stdout line is the JSON, completed" sh -c \
    "tail -n 1 '$dir/src.out' | grep -q '^{\"side\": \"send\", \"status\": \"completed\"'"
check "migration: destination exits 0 (the guest's verdict)" \
    [ $dst_status -eq 0 ]
check "migration: the guest verified its RAM on the destination" \
    grep -q '^verify epoch=2 regions=[0-9]* bad=0 ok' "$dir/dst.out"
# The guest exits right after its verification: the heartbeat's
# continuity is checked on the next migration, which runs on.
if [ $fail -ne 0 ]; then
    show "source stdout" "$dir/src.out"; show "source stderr" "$dir/src.err"
    show "destination stdout" "$dir/dst.out"
    show "destination stderr" "$dir/dst.err"
fi

# ---- a guest that dirties faster than the link: max-iterations.  Its
# writes are tracked by a dirty ring small enough to fill between two
# harvests (KVM_EXIT_DIRTY_RING_FULL), and the library compares the RAM ----
sock2="$dir/o.sock"
failed_before=$fail
"$zm" vm --incoming "unix:$sock2" --run-for 2500ms --quiet \
    >"$dir/dst2.out" 2>"$dir/dst2.err" &
dst=$!
pids="$dst"
n=0
while ! [ -S "$sock2" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
"$zm" vm --kernel "$guest" --ram 128M --vcpus 1 --append "rate=200M" \
    --migrate-to "unix:$sock2" --migrate-after signal --compression zstd \
    --max-bandwidth 16M --max-iterations 3 --dirty-ring 1024 --verify \
    --json --quiet \
    >"$dir/src2.out" 2>"$dir/src2.err" &
src=$!
pids="$pids $src"
if wait_for "$dir/src2.out" 40 '^heartbeat 1 ' $src; then
    kill -USR2 $src
else
    echo "FAILED: the outrun guest did not beat in 40 s"; fail=1
fi
wait_end $src 50
src_status=$?
wait_end $dst 10
dst_status=$?
pids=""
check "outrun: source exits 0" [ $src_status -eq 0 ]
check "outrun: completed with max-iterations reached, 3 rounds" sh -c \
    "tail -n 1 '$dir/src2.out' | grep '\"status\": \"completed\"' |
     grep '\"iterations\": 3,' | grep -q '\"max-iterations-reached\": true'"
check "outrun: the destination ran the guest on and exits 0" \
    [ $dst_status -eq 0 ]
check "outrun: the guest verified its RAM on the destination" \
    grep -q '^verify epoch=2 regions=[0-9]* bad=0 ok' "$dir/dst2.out"
last=$(grep '^heartbeat ' "$dir/src2.out" | tail -n 1 | cut -d' ' -f2)
first=$(grep '^heartbeat ' "$dir/dst2.out" | head -n 1 | cut -d' ' -f2)
next_beat() { [ -n "$last" ] && [ -n "$first" ] && [ "$first" -eq $((last + 1)) ]; }
check "outrun: heartbeat continuous (source's last ${last:-none}, destination's first ${first:-none})" \
    next_beat
check "outrun: the destination's heartbeat says epoch=2" \
    grep -q "^heartbeat ${first:-x} epoch=2 " "$dir/dst2.out"
if [ $fail -ne $failed_before ]; then
    show "source stdout" "$dir/src2.out"; show "source stderr" "$dir/src2.err"
    show "destination stdout" "$dir/dst2.out"
    show "destination stderr" "$dir/dst2.err"
fi


# ---- a switchover the destination refuses (its --vcpus differs): the
# source's vCPUs were stopped for it; they resume, and the guest runs on
# with its RAM intact ----
failed_before=$fail
sock3="$dir/r.sock"
"$zm" vm --incoming "unix:$sock3" --ram 128M --vcpus 2 --quiet \
    >"$dir/dst3.out" 2>"$dir/dst3.err" &
dst=$!
pids="$pids $dst"
n=0
while ! [ -S "$sock3" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
"$zm" vm --kernel "$guest" --ram 128M --vcpus 1 \
    --append "rate=10M heartbeat=200 verify_every=2" \
    --migrate-to "unix:$sock3" --migrate-after signal --quiet \
    >"$dir/src3.out" 2>"$dir/src3.err" &
src=$!
pids="$pids $src"
resumed=""
if wait_for "$dir/src3.out" 40 '^heartbeat 1 ' $src; then
    kill -USR2 $src
    if wait_for "$dir/src3.err" 40 'the migration failed; the guest runs on' \
        $src; then
        at=$(grep '^heartbeat ' "$dir/src3.out" | tail -n 1 | cut -d' ' -f2)
        # Three more beats: at least one verify pass (every 2) among them.
        wait_for "$dir/src3.out" 40 "^heartbeat $((${at:-0} + 3)) " $src &&
            resumed=$at
    fi
fi
kill -TERM $src 2>/dev/null
wait_end $src 10
src_status=$?
wait_end $dst 10
dst_status=$?
pids=""
check "refused: the source reports the failure and exits 1" sh -c \
    "[ $src_status -eq 1 ] &&
     grep -q 'peer failed: the embedder could not load' '$dir/src3.err'"
check "refused: the destination names the vCPU count and exits 1" sh -c \
    "[ $dst_status -eq 1 ] && grep -q -- '--vcpus says 2' '$dir/dst3.err'"
check "refused: the source's guest beats on after the failure" [ -n "$resumed" ]
# What the source's guest printed from heartbeat $resumed on.
sed -n "/^heartbeat ${resumed:-x} /,\$p" "$dir/src3.out" >"$dir/after3"
check "refused: a verify pass after the failure says ok, epoch still 1" \
    grep -q '^verify epoch=1 regions=[0-9]* bad=0 ok' "$dir/after3"
check "refused: no verify pass failed" sh -c "! grep -q FAILED '$dir/src3.out'"
if [ $fail -ne $failed_before ]; then
    show "source stdout" "$dir/src3.out"; show "source stderr" "$dir/src3.err"
    show "destination stderr" "$dir/dst3.err"
fi


# ---- file: the running VM saved to a file, then restored from it ----
failed_before=$fail
"$zm" vm --kernel "$guest" --ram 128M --vcpus 2 \
    --append "rate=20M exit_after_verify=1" --migrate-to "file:$dir/vm.zm" \
    --migrate-after 1s --compression lz4 --json --quiet \
    >"$dir/src4.out" 2>"$dir/src4.err" &
src=$!
pids="$pids $src"
wait_end $src 40
src_status=$?
"$zm" vm --incoming "file:$dir/vm.zm" --run-for 30s --quiet \
    >"$dir/dst4.out" 2>"$dir/dst4.err" &
dst=$!
pids="$pids $dst"
wait_end $dst 40
dst_status=$?
pids=""
check "file: the source saves the running VM and exits 0" sh -c \
    "[ $src_status -eq 0 ] &&
     tail -n 1 '$dir/src4.out' | grep -q '\"status\": \"completed\"'"
check "file: restored, the guest verifies its RAM and exits 0" sh -c \
    "[ $dst_status -eq 0 ] &&
     grep -q '^verify epoch=2 regions=[0-9]* bad=0 ok' '$dir/dst4.out'"
if [ $fail -ne $failed_before ]; then
    show "source stdout" "$dir/src4.out"; show "source stderr" "$dir/src4.err"
    show "destination stdout" "$dir/dst4.out"
    show "destination stderr" "$dir/dst4.err"
fi

exit $fail
