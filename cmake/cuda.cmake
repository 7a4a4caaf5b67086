# The fused-loss CUDA kernels (src/cuda/*.cu), included by CMakeLists.txt after the
# safetune_lib and safetune targets exist.
#
#  - src/cuda/loss_dispatch.cpp (the tensor-level entry points) always goes into
#    safetune_lib: it falls back to torch ops when the kernels are absent.
#  - When nvcc is found, the kernels are built into the static library
#    safetune_cuda_kernels (plain CUDA, no torch) and the standalone test program
#    test_cuda_kernels (ctest: cuda.kernels, skipped with 77 when no GPU is present), so
#    that CI compiles them on machines without a GPU.
#  - Only when LibTorch itself has CUDA (a CUDA build through CMAKE_PREFIX_PATH, not
#    Debian's CPU libtorch) are the kernels linked into safetune_lib, with
#    SAFETUNE_CUDA_KERNELS defined for the dispatch.
#
# Options: SAFETUNE_CUDA (ON; OFF skips the kernels even when nvcc is there),
# SAFETUNE_CUDA_ARCHITECTURES (CMakeLists.txt; default 80;90).

target_sources(safetune_lib PRIVATE ${PROJECT_SOURCE_DIR}/src/cuda/loss_dispatch.cpp)

# A CUDA LibTorch (its config defines torch_cuda / TORCH_CUDA_LIBRARIES): the code that
# reads CUDA allocator statistics is compiled in, with or without the kernels below.
set(SAFETUNE_BUILD_CUDA "")
set(SAFETUNE_BUILD_KERNEL_ARCHS "")
if(TORCH_CUDA_LIBRARIES OR TARGET torch_cuda OR TARGET c10_cuda)
  target_compile_definitions(safetune_lib PUBLIC SAFETUNE_TORCH_CUDA=1)
  find_package(CUDAToolkit QUIET)
  set(SAFETUNE_BUILD_CUDA "${CUDAToolkit_VERSION}")
endif()

option(SAFETUNE_CUDA "Build the CUDA loss kernels when nvcc is found" ON)

if(SAFETUNE_CUDA)
  # nvcc is not always on PATH; the toolkit's default location is tried too.
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
endif()

if(SAFETUNE_CUDA AND CMAKE_CUDA_COMPILER)
  # The host compiler of the C++ code is nvcc's too (same ABI and standard library);
  # g++ 12 (Debian 12) is within CUDA 13's supported range, so no override is needed.
  if(NOT CMAKE_CUDA_HOST_COMPILER AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    set(CMAKE_CUDA_HOST_COMPILER ${CMAKE_CXX_COMPILER})
  endif()
  # Only the first enable_language(CUDA) reads this; a CUDA LibTorch's config may have
  # enabled CUDA already with the compiler's default, so the targets below set their own.
  if(NOT CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES ${SAFETUNE_CUDA_ARCHITECTURES})
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)

  file(GLOB SAFETUNE_CUDA_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/cuda/*.cu)
  add_library(safetune_cuda_kernels STATIC ${SAFETUNE_CUDA_SOURCES})
  target_include_directories(safetune_cuda_kernels PUBLIC ${PROJECT_SOURCE_DIR}/include)
  target_compile_options(safetune_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
  set_target_properties(safetune_cuda_kernels PROPERTIES POSITION_INDEPENDENT_CODE ON
                                                         CUDA_ARCHITECTURES "${SAFETUNE_CUDA_ARCHITECTURES}")
  target_link_libraries(safetune_cuda_kernels PUBLIC CUDA::cudart)

  # The kernels against a CPU reference; needs nothing but the CUDA runtime.
  add_executable(test_cuda_kernels ${PROJECT_SOURCE_DIR}/tests/cuda/test_cuda_kernels.cu)
  target_link_libraries(test_cuda_kernels PRIVATE safetune_cuda_kernels)
  set_target_properties(test_cuda_kernels PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}
                                                     CUDA_ARCHITECTURES "${SAFETUNE_CUDA_ARCHITECTURES}")
  if(SAFETUNE_BUILD_TESTS)
    enable_testing()
    add_test(NAME cuda.kernels COMMAND test_cuda_kernels)
    set_tests_properties(cuda.kernels PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
  endif()

  # Torch's CMake config sets TORCH_CUDA_LIBRARIES (and defines torch_cuda) only when
  # LibTorch was built with CUDA.
  if(TORCH_CUDA_LIBRARIES OR TARGET torch_cuda OR TARGET c10_cuda)
    target_link_libraries(safetune_lib PUBLIC safetune_cuda_kernels)
    target_compile_definitions(safetune_lib PUBLIC SAFETUNE_CUDA_KERNELS=1)
    set(SAFETUNE_BUILD_KERNEL_ARCHS "${SAFETUNE_CUDA_ARCHITECTURES}")
    message(STATUS "safetune: CUDA loss kernels built (${SAFETUNE_CUDA_ARCHITECTURES}) and used by LibTorch's CUDA")
  else()
    message(STATUS "safetune: CUDA loss kernels built (${SAFETUNE_CUDA_ARCHITECTURES}); LibTorch is CPU-only, "
                   "so they are tested standalone and not linked into safetune")
  endif()
else()
  message(STATUS "safetune: no CUDA compiler (or SAFETUNE_CUDA=OFF); the loss kernels are not built (torch-op fallback only)")
endif()

# The check that a build made where nvcc is present came out with its kernels (tests/build).
if(SAFETUNE_BUILD_TESTS)
  enable_testing()
  set(_nvcc_found 0)
  if(SAFETUNE_CUDA AND CMAKE_CUDA_COMPILER)
    set(_nvcc_found 1)
    get_filename_component(_cuda_bin ${CMAKE_CUDA_COMPILER} DIRECTORY)
  endif()
  # cuobjdump lists the device code in a binary: the toolkit's, or the one the torch wheel
  # brings with triton (a toolkit may come without it).
  find_program(SAFETUNE_CUOBJDUMP cuobjdump HINTS ${_cuda_bin}
               "${TORCH_INSTALL_PREFIX}/../triton/backends/nvidia/bin")
  add_test(NAME build.cuda_linked COMMAND bash ${PROJECT_SOURCE_DIR}/tests/build/cuda_linked.sh
           $<TARGET_FILE:safetune> ${_nvcc_found} "${SAFETUNE_CUDA_ARCHITECTURES}" "${SAFETUNE_CUOBJDUMP}")
  set_tests_properties(build.cuda_linked PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120)
endif()
