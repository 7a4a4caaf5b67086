# Data parallelism over LibTorch's c10d (src/dist/): the process groups are compiled into
# libtorch itself, but their headers are only usable with the backend macros defined and
# the gloo headers on the include path.
#   Gloo: the torch wheel's LibTorch embeds gloo but ships none of its headers; those of
#         Debian's libgloo-dev serve (the few types the c10d headers name, held by pointer).
#   NCCL: only in CUDA builds of LibTorch (USE_C10D_NCCL, as torch's extension builder
#         defines it); needs nccl.h (the wheel's nvidia-nccl package, or a system NCCL).
# src/dist/ alone sees SAFETUNE_C10D_GLOO / SAFETUNE_C10D_NCCL (the headers were found), so
# the precompiled header stays shared; Torch's own USE_C10D_* flags only say what
# libtorch was built with.
file(GLOB SAFETUNE_DIST_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/dist/*.cpp)

find_path(SAFETUNE_GLOO_INCLUDE_DIR gloo/algorithm.h HINTS ${TORCH_INCLUDE_DIRS})
set(_safetune_nccl_default OFF)
if(TORCH_CUDA_LIBRARIES OR TARGET torch_cuda)
  set(_safetune_nccl_default ON)
endif()
option(SAFETUNE_DIST_GLOO "c10d Gloo process group (CPU data parallelism)" ON)
option(SAFETUNE_DIST_NCCL "c10d NCCL process group (CUDA data parallelism; CUDA LibTorch only)"
       ${_safetune_nccl_default})

set(_safetune_dist_defs "")
if(SAFETUNE_DIST_GLOO AND SAFETUNE_GLOO_INCLUDE_DIR)
  list(APPEND _safetune_dist_defs SAFETUNE_C10D_GLOO)
  target_include_directories(safetune_lib PRIVATE ${SAFETUNE_GLOO_INCLUDE_DIR})
  # Inline code in the gloo headers refers to gloo's symbols: the wheel's libtorch_cpu
  # embeds gloo and exports them, so no libgloo is linked (a second copy would shadow them).
  message(STATUS "safetune: c10d Gloo data parallelism (gloo headers in ${SAFETUNE_GLOO_INCLUDE_DIR})")
else()
  message(WARNING "safetune: gloo headers not found (Debian: apt-get install libgloo-dev); "
                  "multi-process training is disabled in this build")
endif()

if(SAFETUNE_DIST_NCCL)
  find_path(SAFETUNE_NCCL_INCLUDE_DIR nccl.h HINTS ${TORCH_INCLUDE_DIRS} ${CUDAToolkit_INCLUDE_DIRS}
            /usr/local/cuda/include PATH_SUFFIXES ../../nvidia/nccl/include)
  if(SAFETUNE_NCCL_INCLUDE_DIR AND SAFETUNE_GLOO_INCLUDE_DIR)
    list(APPEND _safetune_dist_defs SAFETUNE_C10D_NCCL)
    target_include_directories(safetune_lib PRIVATE ${SAFETUNE_NCCL_INCLUDE_DIR})
    message(STATUS "safetune: c10d NCCL data parallelism (nccl.h in ${SAFETUNE_NCCL_INCLUDE_DIR})")
  else()
    message(WARNING "safetune: SAFETUNE_DIST_NCCL is on but nccl.h (or gloo) was not found; NCCL disabled")
  endif()
endif()

if(SAFETUNE_DIST_SOURCES AND _safetune_dist_defs)
  set_property(SOURCE ${SAFETUNE_DIST_SOURCES} APPEND PROPERTY COMPILE_DEFINITIONS ${_safetune_dist_defs})
endif()
