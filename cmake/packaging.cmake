# packaging.cmake — Debian packages with CPack (included by cmake/install.cmake): `cpack -G DEB`
# in the build folder writes three packages from the install components:
#   libotter1     the shared library (component runtime), SONAME libotter.so.1
#   libotter-dev  headers, libotter.so link, CMake package, pkg-config file (component dev)
#   otter-tools   the `otter` command (component tools)
# Dependencies on system libraries come from dpkg-shlibdeps (CPACK_DEBIAN_PACKAGE_SHLIBDEPS);
# the packages' dependencies on each other are explicit and exact (same version).
# Each component's description: its first line is the Debian summary (so no package-wide summary).
# Configure with -DCMAKE_INSTALL_PREFIX=/usr for Debian's multiarch library folder (GNUInstallDirs).
set(CPACK_PACKAGE_NAME otter)
set(CPACK_PACKAGE_VENDOR "Otter")
set(CPACK_PACKAGE_CONTACT "Otter maintainers <otter-maintainers@users.noreply.github.com>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev tools)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# libotter1 ships a shlibs file and an ldconfig trigger.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# dpkg-shlibdeps looks for libotter.so.1 (needed by the CLI) in the build folder.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${CMAKE_BINARY_DIR})
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/otter-runtime/otter")

set(_otter_exact "(= ${PROJECT_VERSION})")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libotter1)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION "Otter training runtime (shared library)
libotter imports an ONNX model, appends a loss, builds the backward pass, applies a mixed
precision policy and trains it, behind a stable C ABI (SONAME libotter.so.1).")
# The OpenMP build of OpenBLAS (libotter's RPATH names its folder; docs/architecture.md, "CPU math
# library"); dpkg-shlibdeps only sees libopenblas.so.0.
if(OTTER_OPENBLAS MATCHES "openblas-openmp")
  set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "libopenblas0-openmp")
endif()

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libotter-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libotter1 ${_otter_exact}")
set(CPACK_DEBIAN_DEV_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_DEV_DESCRIPTION "Otter training runtime (development files)
The C header otter/otter.h, the header-only C++ wrapper otter/otter.hpp, the libotter.so link,
a CMake package (find_package(Otter), target Otter::otter) and a pkg-config file (otter).")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME otter-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION science)
set(CPACK_DEBIAN_TOOLS_PACKAGE_DEPENDS "libotter1 ${_otter_exact}")
set(CPACK_DEBIAN_TOOLS_DESCRIPTION "Otter training runtime (command line)
The otter command: train, evaluate, inspect and export ONNX models; TensorBoard event files,
CSV metrics and SVG loss plots.")

include(CPack)
