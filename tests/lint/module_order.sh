#!/usr/bin/env bash
# Modules include only modules before them (docs/architecture.md): for every file under
# src/<module>/ and include/safetune/<module>/, each #include "safetune/<other>/..." must
# name a module earlier in the dependency order, or its own. A directory that is not in
# the order fails too: a new module takes its place in the list below (and in the docs).
set -uo pipefail
src=${SAFETUNE_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src" || exit 1

order=(core io model text data cuda loss safety dist train bench eval demo cli)
declare -A rank
for i in "${!order[@]}"; do rank[${order[$i]}]=$i; done

bad=0
for dir in src/*/ include/safetune/*/; do
  m=$(basename "$dir")
  [ -n "${rank[$m]+x}" ] || { echo "FAIL: $dir is not a module of the dependency order (${order[*]})"; bad=1; }
done
while IFS=: read -r file line inc; do
  m=$(echo "$file" | sed -E 's#^(src|include/safetune)/([a-z_]+)/.*#\2#')
  n=$(echo "$inc" | sed -E 's#.*"safetune/([a-z_]+)/.*#\1#')
  [ -n "${rank[$m]+x}" ] && [ -n "${rank[$n]+x}" ] || continue
  if [ "${rank[$n]}" -gt "${rank[$m]}" ]; then
    echo "FAIL: $file:$line includes $n/ (after $m/ in the order: ${order[*]})"
    bad=1
  fi
done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"safetune/[a-z_]+/' src include/safetune \
           --include='*.h' --include='*.cpp' --include='*.cu' --include='*.cuh' --include='*.cc')
[ "$bad" -eq 0 ] && echo "PASS: every #include follows the module order (${order[*]})"
exit "$bad"
