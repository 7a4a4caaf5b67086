#!/usr/bin/env bash
# Packs the C++ build dependencies for a machine without network (the GPU machine that
# scripts/device_check.sh runs on): downloads Debian 12's .deb files of every package
# CMakeLists.txt finds (besides LibTorch, which comes from the machine's pip torch) and
# unpacks them into a local prefix, by default deps/ at the repository root:
#   deps/usr/include, deps/usr/lib/x86_64-linux-gnu (libraries, cmake/, pkgconfig/),
#   deps/usr/share/cmake, deps/usr/bin (pkgconf, ninja; cmake with --with-cmake).
# The CMake configs of these packages locate themselves relative to their own files, so
# CMAKE_PREFIX_PATH=deps/usr serves; device_check.sh sets that and the compiler, linker and
# pkg-config search paths. Needs apt-get (no root: only downloads).
#   scripts/pack_device_deps.sh [--with-cmake] [prefix]
set -euo pipefail
cd "$(dirname "$0")/.."

with_cmake=0
if [ "${1:-}" = "--with-cmake" ]; then with_cmake=1; shift; fi
prefix=${1:-deps}

packages=(
  nlohmann-json3-dev                      # nlohmann_json (headers)
  libgloo-dev                             # gloo's headers (c10d's headers include them)
  libyaml-cpp-dev libyaml-cpp0.7          # yaml-cpp
  libcli11-dev                            # CLI11 (headers)
  libgtest-dev                            # GTest (static libraries, headers, CMake config)
  libsentencepiece-dev libsentencepiece0  # sentencepiece (pkg-config)
  pkgconf pkgconf-bin libpkgconf3         # pkg-config itself, for FindPkgConfig
  ninja-build
)
# cmake and the libraries it needs beyond a base system (only when the target lacks cmake).
if [ $with_cmake = 1 ]; then
  packages+=(cmake cmake-data libjsoncpp25 librhash0 libuv1 libarchive13 libcurl4 libnghttp2-14 librtmp1
             libssh2-1 libpsl5 libbrotli1 libldap-2.5-0 libsasl2-2)
fi

debs="$prefix/debs"
mkdir -p "$debs"
(cd "$debs" && apt-get download "${packages[@]}")
for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$prefix"; done
rm -rf "$prefix/usr/share/doc" "$prefix/usr/share/man" "$prefix/usr/src"  # not needed to build

# The .pc files say prefix=/usr; the device environment sets PKG_CONFIG_SYSROOT_DIR to the
# prefix instead of editing them. Record what was packed.
{
  echo "packed $(date -u +%Y-%m-%dT%H:%M:%SZ) from $(. /etc/os-release && echo "$PRETTY_NAME")"
  for deb in "$debs"/*.deb; do dpkg-deb -f "$deb" Package Version | paste -sd' '; done
} > "$prefix/PACKED"
rm -rf "$debs"
echo "pack_device_deps: $(($(wc -l < "$prefix/PACKED") - 1)) packages in $prefix ($(du -sh "$prefix" | cut -f1))"
