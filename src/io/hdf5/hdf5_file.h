#pragma once
// A thin RAII layer over the HDF5 C API: just what the Keras importer and writer need.
// Every failure throws chorus::Error naming the file and the object path.
#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace chorus::io {

// Owns one HDF5 identifier and closes it with the matching H5?close.
class H5Handle {
 public:
  H5Handle() = default;
  explicit H5Handle(hid_t id) : id_(id) {}
  ~H5Handle();
  H5Handle(H5Handle&& o) noexcept : id_(o.id_) { o.id_ = -1; }
  H5Handle& operator=(H5Handle&& o) noexcept;
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
};

class H5File {
 public:
  enum class Mode { read, create };
  // Opens (or truncates and creates) `path`; throws when it is missing or not HDF5.
  H5File(const std::string& path, Mode mode = Mode::read);
  // Opens an HDF5 file held in memory (a member of a .keras archive) for reading, in place:
  // `data` must outlive the object. `name` stands for it in messages ("a.keras:model.weights.h5").
  static H5File from_image(const void* data, std::size_t size, const std::string& name);

  const std::string& path() const { return path_; }
  bool exists(const std::string& object) const;
  bool is_group(const std::string& object) const;
  bool is_dataset(const std::string& object) const;
  // Names of the members of a group, in HDF5's name order.
  std::vector<std::string> children(const std::string& group) const;
  // Paths (relative to `group`) of all datasets below it.
  std::vector<std::string> datasets_below(const std::string& group) const;

  bool has_attribute(const std::string& object, const std::string& name) const;
  // A string attribute, scalar, fixed or variable length.
  std::string string_attribute(const std::string& object, const std::string& name) const;
  // A string-array attribute (Keras' layer_names, weight_names); an empty numeric array
  // (as old Keras writes for layers without weights) reads as empty.
  std::vector<std::string> string_list_attribute(const std::string& object, const std::string& name) const;

  std::vector<std::int64_t> dataset_shape(const std::string& dataset) const;
  // Reads a dataset of any numeric type as float32. Refuses datasets larger than
  // max_elements, so a corrupt header cannot make it allocate without bound.
  std::vector<float> read_floats(const std::string& dataset, std::size_t max_elements) const;
  // Reads only indices [begin, end) along `axis` (a hyperslab), so a rank holding a slice of a
  // split layer never holds the whole weight. Result in row-major order of the slab.
  std::vector<float> read_floats_slice(const std::string& dataset, int axis, std::int64_t begin,
                                       std::int64_t end) const;
  // Reads the block [offset, offset + count) of every axis, in row-major order of the block.
  std::vector<float> read_floats_block(const std::string& dataset, const std::vector<std::int64_t>& offset,
                                       const std::vector<std::int64_t>& count) const;

  // Reads every string attribute and every dataset's shape in the file (what the importer
  // reads before any weight), going on past problems HDF5 reports. For probing a file in a
  // child process (hdf5_probe.h), where only hangs and crashes matter.
  void read_whole_structure() const;

  void create_group(const std::string& group);
  void write_string_attribute(const std::string& object, const std::string& name, const std::string& value);
  void write_string_list_attribute(const std::string& object, const std::string& name,
                                   const std::vector<std::string>& values);
  void write_floats(const std::string& dataset, const std::vector<std::int64_t>& shape, const float* data);

 private:
  H5File() = default;
  H5Handle open_object(const std::string& object) const;
  // Throws unless the dataset holds numbers of at most 8 bytes in chunks of at most 256 MB: a
  // damaged file's huge type or chunk would make HDF5 allocate that much to read any of it.
  void check_readable(hid_t dataset, const std::string& name) const;
  std::string where(const std::string& object) const { return path_ + ":" + object; }

  std::string path_;
  std::shared_ptr<void> image_;  // from_image: what HDF5's callbacks hold (before file_: the
                                 // file closes first)
  H5Handle file_;
};

}  // namespace chorus::io
