# Shared part of the Debian cross toolchains (aarch64-linux-gnu.cmake, arm-linux-gnueabihf.cmake).
# The including file sets CHORUS_CROSS_TRIPLE and CMAKE_SYSTEM_PROCESSOR first.
#
# The target's libraries come from a sysroot built by scripts/make_sysroot.sh (Makefile.pi
# sysroot): pass -DCHORUS_SYSROOT=DIR or set the CHORUS_SYSROOT environment variable.
set(CMAKE_SYSTEM_NAME Linux)

if(NOT CHORUS_SYSROOT AND DEFINED ENV{CHORUS_SYSROOT})
  set(CHORUS_SYSROOT "$ENV{CHORUS_SYSROOT}")
endif()
if(NOT CHORUS_SYSROOT OR NOT EXISTS "${CHORUS_SYSROOT}/usr/lib/${CHORUS_CROSS_TRIPLE}")
  message(FATAL_ERROR "cross build for ${CHORUS_CROSS_TRIPLE}: no sysroot at '${CHORUS_SYSROOT}' "
                      "(expected ${CHORUS_SYSROOT}/usr/lib/${CHORUS_CROSS_TRIPLE}); "
                      "run `make -f Makefile.pi sysroot ARCH=...` or pass -DCHORUS_SYSROOT=DIR")
endif()
# Try-compile projects re-read this file; hand them the sysroot too.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES CHORUS_SYSROOT CHORUS_CROSS_TRIPLE)

set(CMAKE_C_COMPILER ${CHORUS_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${CHORUS_CROSS_TRIPLE}-g++)
set(CMAKE_SYSROOT "${CHORUS_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH "${CHORUS_SYSROOT}")
# Programs (compilers, h5cc, mpicxx) must never come from the sysroot, libraries and headers
# only from it.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config reads the target's .pc files and prefixes their paths with the sysroot.
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${CHORUS_SYSROOT}")
set(ENV{PKG_CONFIG_LIBDIR} "${CHORUS_SYSROOT}/usr/lib/${CHORUS_CROSS_TRIPLE}/pkgconfig:${CHORUS_SYSROOT}/usr/share/pkgconfig")

# FindHDF5 would run the host's h5cc and report the host's libraries: point its wrapper
# variables at nothing so that it searches the sysroot instead.
set(HDF5_C_COMPILER_EXECUTABLE "HDF5_C_COMPILER_EXECUTABLE-NOTFOUND" CACHE FILEPATH "no h5cc when cross compiling")
set(HDF5_PREFER_PARALLEL FALSE)
# Debian keeps the serial HDF5 under hdf5/serial.
set(HDF5_ROOT "${CHORUS_SYSROOT}/usr/lib/${CHORUS_CROSS_TRIPLE}/hdf5/serial")

# Libraries the sysroot's libraries need (libblas.so.3 for Armadillo, Open MPI's own) are found
# at link time through rpath-link, not installed on the build machine.
string(APPEND CMAKE_EXE_LINKER_FLAGS_INIT
       " -Wl,-rpath-link,${CHORUS_SYSROOT}/usr/lib/${CHORUS_CROSS_TRIPLE}"
       " -Wl,-rpath-link,${CHORUS_SYSROOT}/lib/${CHORUS_CROSS_TRIPLE}")
string(APPEND CMAKE_SHARED_LINKER_FLAGS_INIT
       " -Wl,-rpath-link,${CHORUS_SYSROOT}/usr/lib/${CHORUS_CROSS_TRIPLE}"
       " -Wl,-rpath-link,${CHORUS_SYSROOT}/lib/${CHORUS_CROSS_TRIPLE}")

# Tuning: a portable default per architecture, CHORUS_CPU_FLAGS to override (Makefile.pi PI=).
set(CHORUS_CPU_FLAGS "${CHORUS_DEFAULT_CPU_FLAGS}" CACHE STRING "CPU flags for the target board")
string(APPEND CMAKE_C_FLAGS_INIT " ${CHORUS_CPU_FLAGS}")
# -Wno-psabi: GCC notes on every ARM build that a struct-passing ABI changed in GCC 7/9/10,
# which only matters when linking with objects built by those old compilers.
string(APPEND CMAKE_CXX_FLAGS_INIT " ${CHORUS_CPU_FLAGS} -Wno-psabi")
