#!/bin/sh
# Every C file is as clang-format leaves it with the checked-in
# .clang-format.  Formatting differs between clang-format releases, so the
# check runs only with the release the tree is formatted with.
set -eu
top=$(dirname "$0")/..
want=14
command -v clang-format >/dev/null 2>&1 || {
    echo "clang-format not installed: skipped"; exit 77; }
have=$(clang-format --version | sed -n 's/.*version \([0-9]*\).*/\1/p')
[ "$have" = "$want" ] || {
    echo "clang-format $have, the tree is formatted with $want: skipped"
    exit 77; }
cd "$top"
bad=0
for f in $(git ls-files '*.c' '*.h' 2>/dev/null || find src tests fuzz bench include -name '*.[ch]'); do
    if ! clang-format "$f" | cmp -s - "$f"; then
        echo "not formatted: $f (run: clang-format -i $f)"
        bad=1
    fi
done
exit $bad
