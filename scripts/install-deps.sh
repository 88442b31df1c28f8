#!/bin/sh
# Installs the Debian packages zmigrate needs to build and test, when they
# are missing.  As root it runs apt-get; otherwise it prints the command to
# run and fails, so that nothing half-builds.
#   scripts/install-deps.sh          build and test dependencies
#   scripts/install-deps.sh fuzz     also clang, for the libFuzzer targets
#   scripts/install-deps.sh bench    also gnuplot, for zmigrate bench's chart
set -eu

packages="gcc make pkg-config meson ninja-build python3
libzstd-dev liblz4-dev zlib1g-dev libisal-dev libxxhash-dev"
case "${1:-}" in
fuzz) packages="$packages clang libclang-rt-dev" ;;
bench) packages="$packages gnuplot-nox" ;;
esac

missing=""
for p in $packages; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "zmigrate needs these Debian packages:$missing" >&2
    echo "install them with:" >&2
    echo "    sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # one word per package
apt-get install -y -qq --no-install-recommends $missing
