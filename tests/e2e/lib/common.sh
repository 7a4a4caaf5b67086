# Sourced by every tests/e2e/*.sh: where the sources and the binary are (ctest sets
# SAFETUNE_SOURCE_DIR and SAFETUNE_BIN), the python with torch, a scratch directory
# removed on exit, and fail().
here=$(cd "$(dirname "$0")" && pwd)
src=${SAFETUNE_SOURCE_DIR:-$here/../..}
bin=${SAFETUNE_BIN:-$src/build/safetune}
py=/usr/bin/python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
