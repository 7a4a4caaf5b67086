# Sourced by the scripts/bench_*.sh that print safetune's JSON results.

# blas_line JSON: the build, the BLAS library (and OpenBLAS's kernel set, where that is
# the library) and threads that one `safetune bench ... --json` object reports, as one line.
blas_line() {
  "${py:-python3}" -c 'import json, sys; r = json.loads(sys.argv[1])
core = (", core " + r["blas_core"]) if r.get("blas_core") else ""
print("blas: %s%s, %s threads (LibTorch %s, CUDA %s)"
      % (r["blas"], core, r["blas_threads"], r.get("libtorch", "?"), r.get("cuda") or "none"))' "$1"
}
