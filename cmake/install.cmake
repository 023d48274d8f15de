# install.cmake — how Otter installs as a library (included by the top-level CMakeLists.txt after
# the `otter` and `otter_cli` targets exist). `cmake --install build --prefix P` lays out:
#   P/include/otter/otter.h, otter.hpp      the C ABI and the header-only C++ wrapper
#   P/lib/libotter.so.1.x.y (+ SONAME and dev links)
#   P/lib/cmake/Otter/OtterConfig.cmake     find_package(Otter 1) -> imported target Otter::otter
#   P/lib/pkgconfig/otter.pc                pkg-config --cflags --libs otter
#   P/bin/otter                             the command line (RPATH $ORIGIN/../lib)
#   P/share/doc/otter/                      README, third-party licences
# Components (the Debian packages of cmake/packaging.cmake): runtime (libotter1), dev (libotter-dev),
# tools (otter-tools). A Python wheel build (scikit-build-core sets SKBUILD) installs only the
# library, into the `otter` package folder, next to the bindings that load it.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The include path recorded for consumers: the source tree while building, P/include once installed
# (the CMakeLists.txt sets the build-tree folder; an installed export may not name it).
set_target_properties(otter PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "$<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/capi/include>")

# RPATHs of the installed files. libotter keeps only the folder of the OpenMP OpenBLAS (a system
# folder outside the default search path; see docs/architecture.md, "CPU math library") and, in a
# CUDA build, those of cuBLAS and cuDNN; never a build folder; other system libraries are found by
# the loader as usual. The CLI finds libotter
# relative to itself.
set(_otter_rpath "")
get_filename_component(_otter_blas_dir "${OTTER_OPENBLAS}" DIRECTORY)
if(_otter_blas_dir MATCHES "openblas-openmp")
  list(APPEND _otter_rpath "${_otter_blas_dir}")
endif()
if(OTTER_HAVE_CUDA)
  # cuBLAS and cuDNN where this build found them (the CUDA runtime itself is linked statically).
  get_filename_component(_otter_cudnn_dir "${OTTER_CUDNN_LIBRARY}" DIRECTORY)
  list(APPEND _otter_rpath "${CUDAToolkit_LIBRARY_DIR}" "${_otter_cudnn_dir}")
  list(REMOVE_DUPLICATES _otter_rpath)
endif()
set_target_properties(otter PROPERTIES INSTALL_RPATH "${_otter_rpath}")

if(SKBUILD)
  # pip install . (pyproject.toml): the library goes inside the Python package, which loads the
  # copy beside its own files first (bindings/python/otter/_capi.py).
  # A wheel cannot hold symlinks: one file, named by the SONAME (no VERSION -> libotter.so.1).
  set_property(TARGET otter PROPERTY VERSION)
  install(TARGETS otter LIBRARY DESTINATION otter NAMELINK_SKIP COMPONENT python)
  return()
endif()

file(RELATIVE_PATH _otter_bin_to_lib "/${CMAKE_INSTALL_BINDIR}" "/${CMAKE_INSTALL_LIBDIR}")
set_target_properties(otter_cli PROPERTIES INSTALL_RPATH "$ORIGIN/${_otter_bin_to_lib}")

install(TARGETS otter EXPORT OtterTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES capi/include/otter/otter.h bindings/cpp/otter.hpp
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/otter COMPONENT dev)
install(TARGETS otter_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)

# CMake package: Otter::otter, version compatible within a major (the SONAME's ABI major).
set(_otter_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/Otter)
install(EXPORT OtterTargets NAMESPACE Otter:: FILE OtterTargets.cmake
  DESTINATION ${_otter_cmake_dir} COMPONENT dev)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/OtterConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/OtterConfig.cmake INSTALL_DESTINATION ${_otter_cmake_dir})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/OtterConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/OtterConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/OtterConfigVersion.cmake
  DESTINATION ${_otter_cmake_dir} COMPONENT dev)

# pkg-config: paths relative to the .pc file, so the installed tree can move (any --prefix).
file(RELATIVE_PATH _otter_pc_to_prefix "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" _otter_pc_to_prefix "${_otter_pc_to_prefix}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/otter.pc.in ${CMAKE_CURRENT_BINARY_DIR}/otter.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/otter.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# Documentation and licences (a LICENSE file at the root is installed when the project has one).
install(FILES README.md docs/licenses/THIRD_PARTY.md DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT runtime)
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/LICENSE)
  install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT runtime)
endif()

include(${CMAKE_CURRENT_LIST_DIR}/packaging.cmake)
