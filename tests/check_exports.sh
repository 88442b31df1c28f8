#!/bin/sh
# Every dynamic symbol libzmigrate exports is a zm_ name declared in
# include/zmigrate.h, and every function declared there is exported.
set -eu
lib=$1
header=$(dirname "$0")/../include/zmigrate.h
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | sort)
declared=$(grep -o 'zm_[a-z0-9_]*(' "$header" | tr -d '(' | sort -u)
status=0
for sym in $exported; do
    case $sym in
    zm_*) echo "$declared" | grep -qx "$sym" ||
        { echo "exported but not in zmigrate.h: $sym"; status=1; } ;;
    *) echo "exported without the zm_ prefix: $sym"; status=1 ;;
    esac
done
for sym in $declared; do
    echo "$exported" | grep -qx "$sym" ||
        { echo "declared but not exported: $sym"; status=1; }
done
[ $status -eq 0 ] && echo "$(echo "$exported" | wc -l) symbols, all public"
exit $status
