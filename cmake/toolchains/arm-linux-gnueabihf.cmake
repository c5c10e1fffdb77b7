# 32-bit Raspberry Pi OS / Debian bookworm armhf (ARMv7 with NEON: Pi 2, and Pi 3, 4, 5 in
# 32-bit mode). ARMv6 boards (Pi 1, Zero) are not supported. Usage:
#   cmake -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/arm-linux-gnueabihf.cmake -DCHORUS_SYSROOT=sysroot-armhf ...
# Debian's armhf baseline has no NEON; every ARMv7 Pi has it, so the default enables it.
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(CHORUS_CROSS_TRIPLE arm-linux-gnueabihf)
set(CHORUS_DEFAULT_CPU_FLAGS "-mcpu=cortex-a7 -mfpu=neon-vfpv4 -mfloat-abi=hard")
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
