// Which OpenBLAS kernel set ("core type") the GEMMs run on.
//
// Debian's OpenBLAS is a DYNAMIC_ARCH build: at start it reads cpuid and picks one of its
// kernel sets (Prescott = SSE3, Haswell = AVX2 + FMA, SkylakeX = AVX-512, ...). OpenBLAS
// 0.3.21 (Debian 12's) decides by vendor, family and model first, and a model it does not
// know can land on a generic core: on Intel family 6, an extended model above 10 falls
// through to the Pentium 4 branch and gets "Prescott", whatever the CPU supports (Emerald
// Rapids, or a cloud VM's Xeon; a part of family 19 has base family 15 and ends there too).
// Every GEMM then runs at a fraction of the machine's speed (on an AVX-512 Xeon: ~35
// against ~200 GFLOP/s fp32 on 2 threads) while computing the same results.
//
// safetune therefore predicts OpenBLAS's pick from the same cpuid facts and, when that
// pick is of an older instruction-set level than the CPU supports, sets OPENBLAS_CORETYPE
// before OpenBLAS starts (src/cli/runtime_env.cpp). It names only cores that OpenBLAS
// itself picks for CPUs of that level (SkylakeX for AVX-512, Zen on AMD and Haswell
// elsewhere for AVX2 + FMA, Sandybridge for AVX), and only when the CPU and the OS support
// every instruction those kernels use.
//
// Everything here runs before main, before libc and any shared library are initialised:
// no allocation, no getenv, no static objects with constructors. Names are string
// literals.
#pragma once

namespace safetune::blas {

enum class CpuVendor { kOther, kIntel, kAmd, kHygon, kCentaur, kZhaoxin };

// The cpuid facts that OpenBLAS's detection and this choice read.
struct CpuFeatures {
  CpuVendor vendor = CpuVendor::kOther;
  bool vendor_known = false;  // one of the vendor strings above (else the leaf-0 rule decides)
  unsigned max_leaf = 0;      // cpuid leaf 0, eax
  unsigned family = 0;        // leaf 1 eax bits 8-11 (the base family)
  unsigned ext_family = 0;    // bits 20-27
  unsigned model = 0;         // bits 4-7
  unsigned ext_model = 0;     // bits 16-19
  unsigned stepping = 0;      // bits 0-3
  bool sse3 = false;
  bool amd_3dnow = false;     // 3DNow! and its extensions (leaf 0x80000001 edx bits 30, 31)
  bool avx = false;           // XSAVE, OSXSAVE and AVX, and the OS saves xmm and ymm (XCR0 bits 1-2)
  bool fma = false;
  bool avx2 = false;
  bool avx512f = false, avx512dq = false, avx512cd = false, avx512bw = false, avx512vl = false;
  bool avx512_os = false;     // the OS saves opmask and zmm state (XCR0 bits 5-7)
  bool avx512_bf16 = false;   // leaf 7 subleaf 1 eax bit 5
};

// This CPU's facts (cpuid and xgetbv only; all false off x86).
CpuFeatures read_cpu_features();

// The core OpenBLAS 0.3.21's DYNAMIC_ARCH build (DYNAMIC_OLDER, as Debian builds it)
// picks for this CPU when OPENBLAS_CORETYPE is unset, by the name it reports.
const char* openblas_detected_core(const CpuFeatures& cpu);

// The best core whose kernels this CPU runs and that OPENBLAS_CORETYPE can name in
// OpenBLAS 0.3.21; nullptr below AVX (the SSE-level cores differ little).
const char* best_openblas_core(const CpuFeatures& cpu);

// Instruction-set level of a core name (case-insensitive, as OpenBLAS compares):
// 0 SSE2/SSE3, 1 SSSE3, 2 SSE4, 3 AVX, 4 AVX2 + FMA, 5 AVX-512; -1 unknown name.
int openblas_core_level(const char* core);

struct CoreChoice {
  enum class Why {
    kRaised,         // OpenBLAS would pick an older core than the CPU runs: `core` is set
    kDetectionFine,  // OpenBLAS's own pick is as good as what could be set
    kUserSet,        // OPENBLAS_CORETYPE is in the environment: the user's choice stands
    kKeep,           // SAFETUNE_BLAS_CORETYPE=keep: this choice is off
  };
  const char* core = nullptr;  // the OPENBLAS_CORETYPE to set; nullptr: leave the environment alone
  Why why = Why::kDetectionFine;
};

// The decision, a pure function of the CPU's features, OpenBLAS's own pick
// (openblas_detected_core) and the two variables as found in the environment (nullptr:
// unset): OPENBLAS_CORETYPE and SAFETUNE_BLAS_CORETYPE.
CoreChoice choose_openblas_core(const CpuFeatures& cpu, const char* detected, const char* user_coretype,
                                const char* setting);

}  // namespace safetune::blas
