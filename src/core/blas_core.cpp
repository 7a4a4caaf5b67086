// OpenBLAS core choice (blas_core.h). Runs before main: no allocation, no libc state.
#include "safetune/core/blas_core.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace safetune::blas {
namespace {

bool bit(unsigned reg, int n) { return (reg >> n) & 1u; }

// ASCII case-insensitive equality, as OpenBLAS compares core names (libc's strcasecmp
// consults the locale, which is not set up before main).
bool same_name(const char* a, const char* b) {
  auto lower = [](char ch) { return ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch; };
  for (; *a && *b; ++a, ++b)
    if (lower(*a) != lower(*b)) return false;
  return *a == *b;
}

#if defined(__x86_64__) || defined(__i386__)
unsigned long long xcr0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
}

bool equal12(const char* a, const char* b) {
  for (int i = 0; i < 12; ++i)
    if (a[i] != b[i]) return false;
  return true;
}
#endif

// OpenBLAS's own feature tests, which are looser than ours: "AVX-512" there is AVX512VL
// with zmm state saved, whatever else the CPU has.
bool ob_avx(const CpuFeatures& c) { return c.avx; }
bool ob_avx2(const CpuFeatures& c) { return c.avx && c.avx2; }
bool ob_avx512(const CpuFeatures& c) { return c.avx && c.avx512vl && c.avx512_os; }
bool ob_bf16(const CpuFeatures& c) { return ob_avx512(c) && c.avx512_bf16; }

// What OpenBLAS does when its tables have no entry for a CPU: the best core by features.
const char* by_features(const CpuFeatures& c) {
  if (ob_bf16(c)) return "Cooperlake";
  if (ob_avx512(c)) return "SkylakeX";
  if (ob_avx2(c)) return "Haswell";
  if (ob_avx(c)) return "Sandybridge";
  return "Prescott";
}

// The ladders OpenBLAS's Intel table steps down when a feature is missing.
const char* ladder_avx(const CpuFeatures& c) { return ob_avx(c) ? "Sandybridge" : "Nehalem"; }
const char* ladder_avx2(const CpuFeatures& c) { return ob_avx2(c) ? "Haswell" : ladder_avx(c); }
const char* ladder_avx512(const CpuFeatures& c) { return ob_avx512(c) ? "SkylakeX" : ladder_avx2(c); }
const char* ladder_bf16(const CpuFeatures& c) { return ob_bf16(c) ? "Cooperlake" : ladder_avx512(c); }

// OpenBLAS 0.3.21's Intel family-6 table, one row per extended model, one letter per model
// (0-15): P Prescott (the 32-bit Katmai, Coppermine and Banias entries become Prescott on
// x86-64), C Core2, p Penryn, D Dunnington, N Nehalem, A Atom; s/h/x/c the ladders from
// AVX / AVX2 / AVX-512 / AVX-512 BF16 down; '-' no entry (OpenBLAS then picks by
// features). Extended models 11-15 have no case and fall through to the family-15 branch:
// Prescott.
constexpr const char* kIntelFamily6[16] = {
    "PPPPPPPPPPPP-PPC",  // 0: P6, Pentium M, Core (model 15)
    "------Cp--NNADNN",  // 1: Core 2, Penryn, Nehalem, Atom, Dunnington
    "-----N----s-NsNN",  // 2: Westmere, Sandy Bridge
    "-------A--s-hhsh",  // 3: Ivy Bridge, Haswell, Broadwell, Bay Trail
    "-----hhh----NNhh",  // 4: Haswell, Broadwell, Skylake, Goldmont
    "-----chh----N-hN",  // 5: Skylake-X / Cascade Lake / Cooper Lake, Knights Landing
    "------h---c-c---",  // 6: Cannon Lake, Ice Lake SP
    "----------N--xx-",  // 7: Goldmont Plus, Ice Lake
    "------------xxhc",  // 8: Tiger Lake, Kaby / Coffee Lake, Sapphire Rapids
    "-------c--c---h-",  // 9: Alder Lake, Kaby / Coffee Lake
    "-----hhx--------",  // 10: Comet Lake, Rocket Lake
    "PPPPPPPPPPPPPPPP", "PPPPPPPPPPPPPPPP", "PPPPPPPPPPPPPPPP", "PPPPPPPPPPPPPPPP", "PPPPPPPPPPPPPPPP",
};

// nullptr: no entry (OpenBLAS then picks by features).
const char* intel_table(const CpuFeatures& c) {
  if (c.family == 0xf) return "Prescott";  // Pentium 4 (Northwood and Prescott alike on x86-64)
  if (c.family != 0x6) return nullptr;
  switch (kIntelFamily6[c.ext_model & 15][c.model & 15]) {
    case 'P': return "Prescott";
    case 'C': return "Core2";
    case 'p': return "Penryn";
    case 'D': return "Dunnington";
    case 'N': return "Nehalem";
    case 'A': return "Atom";
    case 's': return ladder_avx(c);
    case 'h': return ladder_avx2(c);
    case 'x': return ladder_avx512(c);
    case 'c': return ladder_bf16(c);
    default: return nullptr;
  }
}

const char* amd_table(const CpuFeatures& c) {
  if (c.family < 0xf) return c.amd_3dnow ? "Prescott" : nullptr;  // Athlon: Prescott on x86-64
  const char* no_avx = "Barcelona";
  switch (c.ext_family) {
    case 0: case 2: return c.sse3 ? "Opteron_SSE3" : "Opteron";
    case 5: case 7: return "Bobcat";
    case 6: {  // Bulldozer and its successors, by model (and extended model)
      const char* core = nullptr;
      if (c.model == 1) core = "Bulldozer";
      else if (c.model == 2 || c.model == 3) core = "Piledriver";
      else if (c.model == 5) core = "Excavator";
      else if (c.model == 0 || c.model == 8)
        core = c.ext_model == 1 ? "Piledriver" : c.ext_model == 3 ? "Steamroller" : c.ext_model == 6 ? "Excavator"
                                                                                                       : nullptr;
      if (!core) return nullptr;
      return ob_avx(c) ? core : no_avx;
    }
    case 8: case 9: return ob_avx(c) ? "Zen" : no_avx;  // Zen 1/2, Hygon Dhyana
    case 10:  // Zen 3/4
      if (ob_bf16(c)) return "Cooperlake";
      if (ob_avx512(c)) return "SkylakeX";
      return ob_avx(c) ? "Zen" : no_avx;
    default: return nullptr;  // Zen 5 and later: by features
  }
}

const char* centaur_table(const CpuFeatures& c) {
  if (c.family == 6) return c.model == 0xf && c.stepping < 0xe ? "Nano" : "Nehalem";
  if (c.family == 7) return c.ext_model == 5 ? (ob_avx2(c) ? "Zen" : "Dunnington") : "Nehalem";
  return c.family >= 8 ? "Nehalem" : nullptr;
}

const char* zhaoxin_table(const CpuFeatures& c) {
  if (c.family == 7 && c.ext_model == 5) return ob_avx2(c) ? "Zen" : "Dunnington";
  return "Nehalem";
}

// Names as OpenBLAS reports them, with their instruction-set level.
struct Core {
  const char* name;
  int level;
};
constexpr Core kCores[] = {
    {"Prescott", 0},    {"Katmai", 0},       {"Coppermine", 0},   {"Northwood", 0},    {"Banias", 0},
    {"Athlon", 0},      {"Unknown", 0},      {"Core2", 1},        {"Penryn", 1},       {"Dunnington", 1},
    {"Atom", 1},        {"Nano", 1},         {"Opteron", 0},      {"Opteron_SSE3", 0}, {"Nehalem", 2},
    {"Barcelona", 2},   {"Bobcat", 1},       {"Sandybridge", 3},  {"Bulldozer", 3},    {"Piledriver", 3},
    {"Steamroller", 3}, {"Excavator", 3},    {"Haswell", 4},      {"Zen", 4},          {"SkylakeX", 5},
    {"Cooperlake", 5},  {"SapphireRapids", 5},
};

}  // namespace

CpuFeatures read_cpu_features() {
  CpuFeatures c;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, cx = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &cx, &d)) return c;
  c.max_leaf = a;
  char v[12];
  for (int i = 0; i < 4; ++i) {
    v[i] = static_cast<char>(b >> (8 * i));
    v[4 + i] = static_cast<char>(d >> (8 * i));
    v[8 + i] = static_cast<char>(cx >> (8 * i));
  }
  c.vendor_known = true;
  if (equal12(v, "GenuineIntel")) c.vendor = CpuVendor::kIntel;
  else if (equal12(v, "AuthenticAMD")) c.vendor = CpuVendor::kAmd;
  else if (equal12(v, "HygonGenuine")) c.vendor = CpuVendor::kHygon;
  else if (equal12(v, "CentaurHauls")) c.vendor = CpuVendor::kCentaur;
  else if (equal12(v, "  Shanghai  ")) c.vendor = CpuVendor::kZhaoxin;
  else c.vendor_known = false;

  if (!__get_cpuid(1, &a, &b, &cx, &d)) return c;
  c.stepping = a & 0xf;
  c.model = (a >> 4) & 0xf;
  c.family = (a >> 8) & 0xf;
  c.ext_model = (a >> 16) & 0xf;
  c.ext_family = (a >> 20) & 0xff;
  c.sse3 = bit(cx, 0);
  c.fma = bit(cx, 12);
  const bool osxsave = bit(cx, 26) && bit(cx, 27);  // XSAVE, and the OS enabled it: xgetbv is there
  const unsigned long long xcr = osxsave ? xcr0() : 0;
  c.avx = osxsave && bit(cx, 28) && (xcr & 6) == 6;
  c.avx512_os = (xcr & 0xe6) == 0xe6;
  unsigned sub_max = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &cx, &d)) {
    sub_max = a;
    c.avx2 = bit(b, 5);
    c.avx512f = bit(b, 16);
    c.avx512dq = bit(b, 17);
    c.avx512cd = bit(b, 28);
    c.avx512bw = bit(b, 30);
    c.avx512vl = bit(b, 31);
  }
  if (sub_max >= 1 && __get_cpuid_count(7, 1, &a, &b, &cx, &d)) c.avx512_bf16 = bit(a, 5);
  if (__get_cpuid(0x80000001, &a, &b, &cx, &d)) c.amd_3dnow = bit(d, 30) && bit(d, 31);
#endif
  return c;
}

const char* openblas_detected_core(const CpuFeatures& c) {
  // OpenBLAS takes an unknown vendor string for Intel when leaf 0 says 0 or has bits 8/10.
  CpuVendor v = c.vendor;
  if (!c.vendor_known && (c.max_leaf == 0 || (c.max_leaf & 0x500) != 0)) v = CpuVendor::kIntel;
  const char* core = nullptr;
  switch (v) {
    case CpuVendor::kIntel: core = intel_table(c); break;
    case CpuVendor::kAmd:
    case CpuVendor::kHygon: core = amd_table(c); break;
    case CpuVendor::kCentaur: core = centaur_table(c); break;
    case CpuVendor::kZhaoxin: core = zhaoxin_table(c); break;
    case CpuVendor::kOther: break;
  }
  return core ? core : by_features(c);
}

const char* best_openblas_core(const CpuFeatures& c) {
  // Our own, stricter tests: each kernel set's instructions, with the OS saving their state.
  const bool avx2_fma = c.avx && c.avx2 && c.fma;
  const bool avx512 = avx2_fma && c.avx512_os && c.avx512f && c.avx512dq && c.avx512cd && c.avx512bw && c.avx512vl;
  const bool amd = c.vendor == CpuVendor::kAmd || c.vendor == CpuVendor::kHygon;
  // Cooperlake adds BF16 GEMM kernels to SkylakeX's, but 0.3.21 cannot be told that name
  // (its OPENBLAS_CORETYPE list ends at SkylakeX), and the fp32 kernels are the same.
  if (avx512) return "SkylakeX";
  if (avx2_fma) return amd ? "Zen" : "Haswell";
  if (c.avx) return "Sandybridge";
  return nullptr;
}

int openblas_core_level(const char* core) {
  if (!core) return -1;
  for (const Core& k : kCores)
    if (same_name(core, k.name)) return k.level;
  return -1;
}

CoreChoice choose_openblas_core(const CpuFeatures& cpu, const char* detected, const char* user_coretype,
                                const char* setting) {
  CoreChoice r;
  if (setting && same_name(setting, "keep")) {
    r.why = CoreChoice::Why::kKeep;
    return r;
  }
  if (user_coretype) {  // even empty: OpenBLAS reads it as set
    r.why = CoreChoice::Why::kUserSet;
    return r;
  }
  const char* best = best_openblas_core(cpu);
  if (!best || openblas_core_level(detected) >= openblas_core_level(best)) return r;
  r.core = best;
  r.why = CoreChoice::Why::kRaised;
  return r;
}

}  // namespace safetune::blas
