# Sourced by the scripts/bench_*.sh that print safetune's JSON results.

# blas_line JSON: the BLAS library, OpenBLAS kernel set (and how it was chosen) and
# threads that one `safetune bench ... --json` object reports, as one line.
blas_line() {
  /usr/bin/python3 -c 'import json, sys; r = json.loads(sys.argv[1])
print("blas: %s, core %s (chosen by %s; OpenBLAS alone picks %s), %s threads"
      % (r["blas"], r["blas_core"], r["blas_core_source"], r["blas_core_detected"], r["blas_threads"]))' "$1"
}
