#pragma once
// The HDF5 library can hang or crash on some corrupt files (a bad global-heap reference made
// Debian's 1.10.8 spin for minutes, found by fuzzing). Before Chorus reads a file's structure
// in its own process, a forked child reads it first: a child that does not finish in time is
// killed and one that crashes is reported, both as chorus::Error naming the file.
#include <cstddef>
#include <functional>
#include <string>

namespace chorus::io {

// Throws chorus::Error when HDF5 hangs (over `timeout_s`; default from $CHORUS_HDF5_PROBE_S,
// else 30 s) or crashes reading the structure (attributes and dataset shapes) of `path`.
// Problems HDF5 reports normally are left to the real read, which names them.
void probe_hdf5_structure(const std::string& path, double timeout_s = 0);
// The same for an HDF5 file held in memory (H5File::from_image), named `name` in messages.
void probe_hdf5_image(const void* data, std::size_t size, const std::string& name, double timeout_s = 0);

}  // namespace chorus::io
