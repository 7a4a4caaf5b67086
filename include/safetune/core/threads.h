// How many threads the CPU compute runs on.
//
// LibTorch computes with two thread pools: its own OpenMP pool (element-wise ops and
// at::parallel_for) and the BLAS library's (GEMMs). OpenBLAS, Debian's libblas, keeps a
// pthread pool of its own that at::set_num_threads does not reach: with train.threads=1
// the GEMMs would still use every core, and two processes on one machine would each use
// all of them. set_compute_threads sets both.
#pragma once

namespace safetune {

// The cores this process may use (at least 1).
int available_cores();

// Sets the OpenMP pool and, when the BLAS library is OpenBLAS, its pool to n threads
// (n <= 0: available_cores()). Returns the count used.
int set_compute_threads(int n);

}  // namespace safetune
