// The OpenBLAS core choice made before main (core/blas_core.h): the prediction of
// OpenBLAS 0.3.21's own pick from cpuid facts, and the decision taken from it, for CPUs
// described by their family/model numbers and features.
#include <gtest/gtest.h>

#include <string>

#include "safetune/core/blas_core.h"

namespace {

using safetune::blas::CoreChoice;
using safetune::blas::CpuFeatures;
using safetune::blas::CpuVendor;

enum class Isa { kSse3, kAvx, kAvx2, kAvx512, kAvx512Bf16 };

// A CPU by display family/model (as /proc/cpuinfo shows them) and instruction-set level,
// with the OS saving every register state the level needs.
CpuFeatures cpu(CpuVendor vendor, unsigned display_family, unsigned display_model, Isa isa) {
  CpuFeatures c;
  c.vendor = vendor;
  c.vendor_known = vendor != CpuVendor::kOther;
  c.max_leaf = 0x20;
  c.family = display_family >= 0xf ? 0xf : display_family;
  c.ext_family = display_family >= 0xf ? display_family - 0xf : 0;
  c.model = display_model & 0xf;
  c.ext_model = display_model >> 4;
  c.sse3 = true;
  c.avx = isa >= Isa::kAvx;
  c.fma = c.avx2 = isa >= Isa::kAvx2;
  c.avx512f = c.avx512dq = c.avx512cd = c.avx512bw = c.avx512vl = c.avx512_os = isa >= Isa::kAvx512;
  c.avx512_bf16 = isa >= Isa::kAvx512Bf16;
  return c;
}

std::string detected(const CpuFeatures& c) { return safetune::blas::openblas_detected_core(c); }

// What start-up sets (nullptr: nothing) with neither variable in the environment.
const char* chosen(const CpuFeatures& c) {
  return safetune::blas::choose_openblas_core(c, safetune::blas::openblas_detected_core(c), nullptr, nullptr).core;
}

TEST(BlasCore, Avx512XeonOutsideOpenBlasTableGetsSkylakeX) {
  // Emerald Rapids (6/0xCF): extended model 12 falls through to the Pentium 4 branch.
  const CpuFeatures emr = cpu(CpuVendor::kIntel, 6, 0xCF, Isa::kAvx512Bf16);
  EXPECT_EQ(detected(emr), "Prescott");
  const CoreChoice c = safetune::blas::choose_openblas_core(emr, "Prescott", nullptr, nullptr);
  ASSERT_NE(c.core, nullptr);
  EXPECT_STREQ(c.core, "SkylakeX");
  EXPECT_EQ(c.why, CoreChoice::Why::kRaised);
  // Without BF16 and on a family-19 part (base family 15) alike.
  EXPECT_STREQ(chosen(cpu(CpuVendor::kIntel, 6, 0xCF, Isa::kAvx512)), "SkylakeX");
  const CpuFeatures fam19 = cpu(CpuVendor::kIntel, 0x13, 0x01, Isa::kAvx512Bf16);
  EXPECT_EQ(detected(fam19), "Prescott");
  EXPECT_STREQ(chosen(fam19), "SkylakeX");
}

TEST(BlasCore, Avx2FmaIntelOutsideOpenBlasTableGetsHaswell) {
  // Raptor Lake (6/0xB7): AVX2 + FMA, no AVX-512; OpenBLAS 0.3.21 says Prescott.
  const CpuFeatures rpl = cpu(CpuVendor::kIntel, 6, 0xB7, Isa::kAvx2);
  EXPECT_EQ(detected(rpl), "Prescott");
  EXPECT_STREQ(chosen(rpl), "Haswell");
  // AVX alone: Sandybridge, the AVX kernels.
  EXPECT_STREQ(chosen(cpu(CpuVendor::kIntel, 6, 0xB7, Isa::kAvx)), "Sandybridge");
  // Nothing above SSE: left to OpenBLAS.
  EXPECT_EQ(chosen(cpu(CpuVendor::kIntel, 6, 0xB7, Isa::kSse3)), nullptr);
}

TEST(BlasCore, AmdGetsZen) {
  // A VM presenting the K8-era "AuthenticAMD family 15 model 107" CPU with the host's
  // AVX2 + FMA: OpenBLAS reads an Opteron.
  const CpuFeatures vm = cpu(CpuVendor::kAmd, 0xf, 107, Isa::kAvx2);
  EXPECT_EQ(detected(vm), "Opteron_SSE3");
  EXPECT_STREQ(chosen(vm), "Zen");
  CpuFeatures hygon = vm;
  hygon.vendor = CpuVendor::kHygon;
  EXPECT_STREQ(chosen(hygon), "Zen");
  // The same VM with AVX-512: SkylakeX, as OpenBLAS picks for Zen 4 without BF16.
  EXPECT_STREQ(chosen(cpu(CpuVendor::kAmd, 0xf, 107, Isa::kAvx512)), "SkylakeX");
}

TEST(BlasCore, DetectionAlreadyRightIsLeftAlone) {
  struct Case {
    CpuVendor vendor;
    unsigned family, model;
    Isa isa;
    const char* openblas;
  };
  const Case cases[] = {
      {CpuVendor::kIntel, 6, 0x55, Isa::kAvx512, "SkylakeX"},        // Skylake-SP / Cascade Lake
      {CpuVendor::kIntel, 6, 0x55, Isa::kAvx512Bf16, "Cooperlake"},  // Cooper Lake
      {CpuVendor::kIntel, 6, 0x6A, Isa::kAvx512, "SkylakeX"},        // Ice Lake SP
      {CpuVendor::kIntel, 6, 0x8F, Isa::kAvx512Bf16, "Cooperlake"},  // Sapphire Rapids
      {CpuVendor::kIntel, 6, 0xAD, Isa::kAvx512Bf16, "Cooperlake"},  // Granite Rapids: by features
      {CpuVendor::kIntel, 6, 0x3F, Isa::kAvx2, "Haswell"},           // Haswell-EP
      {CpuVendor::kIntel, 6, 0x97, Isa::kAvx2, "Haswell"},           // Alder Lake
      {CpuVendor::kIntel, 6, 0x2D, Isa::kAvx, "Sandybridge"},        // Sandy Bridge-EP
      {CpuVendor::kIntel, 6, 0x1A, Isa::kSse3, "Nehalem"},           // Nehalem
      {CpuVendor::kAmd, 0x17, 0x31, Isa::kAvx2, "Zen"},              // Zen 2 (EPYC Rome)
      {CpuVendor::kAmd, 0x19, 0x01, Isa::kAvx2, "Zen"},              // Zen 3 (EPYC Milan)
      {CpuVendor::kAmd, 0x19, 0x11, Isa::kAvx512Bf16, "Cooperlake"}, // Zen 4 (EPYC Genoa)
      {CpuVendor::kAmd, 0x1A, 0x02, Isa::kAvx512Bf16, "Cooperlake"}, // Zen 5 (EPYC Turin): by features
      {CpuVendor::kAmd, 0x1A, 0x02, Isa::kAvx2, "Haswell"},          // a later AVX2-only part: same level as Zen
      {CpuVendor::kAmd, 0x15, 0x02, Isa::kAvx, "Piledriver"},        // Piledriver
      {CpuVendor::kZhaoxin, 7, 0x5B, Isa::kAvx2, "Zen"},             // Zhaoxin KX-7000
  };
  for (const Case& k : cases) {
    const CpuFeatures c = cpu(k.vendor, k.family, k.model, k.isa);
    SCOPED_TRACE(std::to_string(k.family) + "/" + std::to_string(k.model));
    EXPECT_EQ(detected(c), k.openblas);
    const CoreChoice r = safetune::blas::choose_openblas_core(c, k.openblas, nullptr, nullptr);
    EXPECT_EQ(r.core, nullptr);
    EXPECT_EQ(r.why, CoreChoice::Why::kDetectionFine);
  }
}

TEST(BlasCore, UserCoretypeIsKept) {
  const CpuFeatures emr = cpu(CpuVendor::kIntel, 6, 0xCF, Isa::kAvx512Bf16);
  for (const char* user : {"Haswell", "Prescott", "cooperlake", ""}) {
    const CoreChoice c = safetune::blas::choose_openblas_core(emr, "Prescott", user, nullptr);
    EXPECT_EQ(c.core, nullptr) << user;
    EXPECT_EQ(c.why, CoreChoice::Why::kUserSet) << user;
  }
}

TEST(BlasCore, KeepTurnsItOff) {
  const CpuFeatures emr = cpu(CpuVendor::kIntel, 6, 0xCF, Isa::kAvx512Bf16);
  for (const char* user : {static_cast<const char*>(nullptr), "Haswell"}) {
    const CoreChoice c = safetune::blas::choose_openblas_core(emr, "Prescott", user, "keep");
    EXPECT_EQ(c.core, nullptr);
    EXPECT_EQ(c.why, CoreChoice::Why::kKeep);
  }
  // Any other value is not "keep": the choice is made as usual.
  EXPECT_STREQ(safetune::blas::choose_openblas_core(emr, "Prescott", nullptr, "auto").core, "SkylakeX");
}

TEST(BlasCore, NamesOnlyWhatTheCpuAndOsRun) {
  // AVX-512 in the CPU but not saved by the OS (XCR0): at most Haswell.
  CpuFeatures c = cpu(CpuVendor::kIntel, 6, 0xCF, Isa::kAvx512);
  c.avx512_os = false;
  EXPECT_STREQ(chosen(c), "Haswell");
  // Xeon Phi's AVX-512 (F and CD, no BW/DQ/VL): not SkylakeX's.
  c = cpu(CpuVendor::kIntel, 6, 0xCF, Isa::kAvx2);
  c.avx512f = c.avx512cd = c.avx512_os = true;
  EXPECT_STREQ(chosen(c), "Haswell");
  // AVX2 without FMA: the AVX kernels only.
  c = cpu(CpuVendor::kIntel, 6, 0xCF, Isa::kAvx2);
  c.fma = false;
  EXPECT_STREQ(chosen(c), "Sandybridge");
  // AVX that the OS does not enable: nothing above SSE.
  c = cpu(CpuVendor::kIntel, 6, 0xCF, Isa::kSse3);
  c.avx2 = c.fma = true;
  EXPECT_EQ(chosen(c), nullptr);
}

TEST(BlasCore, Levels) {
  using safetune::blas::openblas_core_level;
  EXPECT_LT(openblas_core_level("Prescott"), openblas_core_level("Nehalem"));
  EXPECT_LT(openblas_core_level("Nehalem"), openblas_core_level("Sandybridge"));
  EXPECT_LT(openblas_core_level("Sandybridge"), openblas_core_level("Haswell"));
  EXPECT_EQ(openblas_core_level("Haswell"), openblas_core_level("Zen"));
  EXPECT_LT(openblas_core_level("Zen"), openblas_core_level("SkylakeX"));
  EXPECT_EQ(openblas_core_level("SKYLAKEX"), openblas_core_level("SkylakeX"));
  EXPECT_EQ(openblas_core_level("Skylake"), -1);
  EXPECT_EQ(openblas_core_level(nullptr), -1);
}

TEST(BlasCore, ReadsThisCpu) {
  const CpuFeatures c = safetune::blas::read_cpu_features();
#if defined(__x86_64__)
  EXPECT_TRUE(c.vendor_known || c.max_leaf > 0);
  EXPECT_GE(c.max_leaf, 1u);
  // Implications every real CPU honours (a level needs the one below it).
  if (c.avx512_os) {
    EXPECT_TRUE(c.avx);
  }
  if (c.avx512_bf16) {
    EXPECT_TRUE(c.avx512f);
  }
  // Whatever this CPU is, the choice names a core at least as good as OpenBLAS's own.
  const char* d = safetune::blas::openblas_detected_core(c);
  const CoreChoice r = safetune::blas::choose_openblas_core(c, d, nullptr, nullptr);
  if (r.core) {
    EXPECT_GT(safetune::blas::openblas_core_level(r.core), safetune::blas::openblas_core_level(d));
  }
#else
  EXPECT_EQ(safetune::blas::best_openblas_core(c), nullptr);
#endif
}

}  // namespace
