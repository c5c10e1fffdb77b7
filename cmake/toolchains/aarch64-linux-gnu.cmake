# 64-bit Raspberry Pi OS / Debian bookworm arm64 (Pi 3, 4, 5). Usage:
#   cmake -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake -DCHORUS_SYSROOT=sysroot-arm64 ...
# The default tunes for the Pi 3's Cortex-A53 and runs on every 64-bit Pi; Pi 4 is
# -mcpu=cortex-a72, Pi 5 -mcpu=cortex-a76 (CHORUS_CPU_FLAGS).
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CHORUS_CROSS_TRIPLE aarch64-linux-gnu)
set(CHORUS_DEFAULT_CPU_FLAGS "-mcpu=cortex-a53")
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
