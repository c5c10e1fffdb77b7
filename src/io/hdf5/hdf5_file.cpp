#include "io/hdf5/hdf5_file.h"

#include <fstream>
#include <memory>
#include <set>

#include "core/error.h"

namespace chorus::io {

namespace {

// HDF5 prints its own error stack on stderr by default; our exceptions say it better.
struct SilenceHdf5 {
  SilenceHdf5() {
    // No clean-up at exit: a file whose last write failed (a full disk) stays open in the
    // library, and closing it again at exit crashed the process after its error was printed.
    // The H5File handles close what they opened; the system the rest.
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
};
const SilenceHdf5 silence;

herr_t close_any(hid_t id) {
  switch (H5Iget_type(id)) {
    case H5I_FILE:
      return H5Fclose(id);
    case H5I_GROUP:
      return H5Gclose(id);
    case H5I_DATASET:
      return H5Dclose(id);
    case H5I_ATTR:
      return H5Aclose(id);
    case H5I_DATATYPE:
      return H5Tclose(id);
    case H5I_DATASPACE:
      return H5Sclose(id);
    case H5I_GENPROP_LST:
      return H5Pclose(id);
    default:
      return H5Oclose(id);
  }
}

}  // namespace

H5Handle::~H5Handle() {
  if (id_ >= 0) close_any(id_);
}

H5Handle& H5Handle::operator=(H5Handle&& o) noexcept {
  if (this != &o) {
    if (id_ >= 0) close_any(id_);
    id_ = o.id_;
    o.id_ = -1;
  }
  return *this;
}

H5File::H5File(const std::string& path, Mode mode) : path_(path) {
  if (mode == Mode::create) {
    file_ = H5Handle(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    if (!file_.valid()) fail(path, ": cannot create HDF5 file (is the folder writable?)");
    return;
  }
  if (!std::ifstream(path).good()) fail(path, ": cannot open file (missing or unreadable)");
  htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 <= 0) fail(path, ": not an HDF5 file (no HDF5 signature found)");
  file_ = H5Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!file_.valid()) fail(path, ": HDF5 file cannot be opened (truncated or corrupt?)");
}

namespace {
// HDF5's file-image callbacks that hand it the caller's buffer instead of copies: every
// "allocation" of the image is the buffer itself, copies into it are skipped, frees do
// nothing. The file is opened read-only, so HDF5 never writes to or grows it.
struct InPlaceImage {
  void* data;
  std::size_t size;
};
void* image_malloc(std::size_t size, H5FD_file_image_op_t, void* udata) {
  auto* image = static_cast<InPlaceImage*>(udata);
  return size == image->size ? image->data : nullptr;
}
void* image_memcpy(void* dest, const void* src, std::size_t, H5FD_file_image_op_t, void*) {
  return dest == src ? dest : nullptr;  // only ever asked to "copy" the buffer onto itself
}
void* image_realloc(void*, std::size_t, H5FD_file_image_op_t, void*) { return nullptr; }
herr_t image_free(void*, H5FD_file_image_op_t, void*) { return 0; }
void* udata_copy(void* udata) { return udata; }
herr_t udata_free(void*) { return 0; }
}  // namespace

H5File H5File::from_image(const void* data, std::size_t size, const std::string& name) {
  H5File f;
  f.path_ = name;
  // The image description must outlive the file: HDF5 keeps the pointer as its udata.
  auto image = std::make_shared<InPlaceImage>(InPlaceImage{const_cast<void*>(data), size});
  f.image_ = image;
  H5Handle fapl(H5Pcreate(H5P_FILE_ACCESS));
  H5FD_file_image_callbacks_t callbacks{image_malloc, image_memcpy, image_realloc, image_free,
                                        udata_copy,   udata_free,   image.get()};
  if (!fapl.valid() || H5Pset_fapl_core(fapl.get(), 64 * 1024, false) < 0 ||
      H5Pset_file_image_callbacks(fapl.get(), &callbacks) < 0 ||
      H5Pset_file_image(fapl.get(), const_cast<void*>(data), size) < 0)
    fail(name, ": cannot set up HDF5 to read it in memory");
  f.file_ = H5Handle(H5Fopen(name.c_str(), H5F_ACC_RDONLY, fapl.get()));
  if (!f.file_.valid()) fail(name, ": not an HDF5 file, or a damaged one");
  return f;
}

bool H5File::exists(const std::string& object) const {
  if (object == "/" || object.empty()) return true;
  // Check each link on the way so that a missing parent does not raise an HDF5 error.
  std::string prefix;
  std::size_t start = object[0] == '/' ? 1 : 0;
  while (start <= object.size()) {
    std::size_t end = object.find('/', start);
    if (end == std::string::npos) end = object.size();
    prefix = object.substr(0, end);
    if (!prefix.empty() && H5Lexists(file_.get(), prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    start = end + 1;
  }
  return true;
}

H5Handle H5File::open_object(const std::string& object) const {
  if (!exists(object)) fail(where(object), ": no such group or dataset");
  H5Handle h(H5Oopen(file_.get(), object.c_str(), H5P_DEFAULT));
  if (!h.valid()) fail(where(object), ": cannot be opened (corrupt file?)");
  return h;
}

bool H5File::is_group(const std::string& object) const {
  if (!exists(object)) return false;
  H5O_info_t info;
  if (H5Oget_info_by_name2(file_.get(), object.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return false;
  return info.type == H5O_TYPE_GROUP;
}

bool H5File::is_dataset(const std::string& object) const {
  if (!exists(object)) return false;
  H5O_info_t info;
  if (H5Oget_info_by_name2(file_.get(), object.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return false;
  return info.type == H5O_TYPE_DATASET;
}

std::vector<std::string> H5File::children(const std::string& group) const {
  H5Handle g = open_object(group);
  std::vector<std::string> names;
  auto collect = [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
  };
  if (H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect, &names) < 0)
    fail(where(group), ": cannot list members");
  return names;
}

std::vector<std::string> H5File::datasets_below(const std::string& group) const {
  std::vector<std::string> out;
  std::vector<std::string> todo{""};
  // A group reached again through another hard link (a cycle, in a damaged or crafted file) is
  // walked once: its address in the file says so. Without that, a file whose group links to
  // itself took minutes to reach the object limit below (paths grow, and each is checked link
  // by link).
  std::set<haddr_t> walked;
  if (H5O_info_t info; H5Oget_info_by_name2(file_.get(), group.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) >= 0)
    walked.insert(info.addr);
  std::size_t objects = 0;
  while (!todo.empty()) {
    std::string rel = todo.back();
    todo.pop_back();
    std::string full = rel.empty() ? group : group + "/" + rel;
    for (const auto& child : children(full)) {
      std::string child_rel = rel.empty() ? child : rel + "/" + child;
      std::string child_full = group + "/" + child_rel;
      H5O_info_t info;
      if (exists(child_full) &&
          H5Oget_info_by_name2(file_.get(), child_full.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) >= 0) {
        if (info.type == H5O_TYPE_DATASET)
          out.push_back(child_rel);
        else if (info.type == H5O_TYPE_GROUP && walked.insert(info.addr).second)
          todo.push_back(child_rel);
      }
      // No real Keras file comes near this.
      if (++objects > 100000) fail(where(group), ": more than 100000 objects below it");
    }
  }
  return out;
}

bool H5File::has_attribute(const std::string& object, const std::string& name) const {
  if (!exists(object)) return false;
  return H5Aexists_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

namespace {

std::vector<std::string> read_string_attr(hid_t attr, const std::string& where) {
  H5Handle type(H5Aget_type(attr));
  H5Handle space(H5Aget_space(attr));
  hssize_t count = H5Sget_simple_extent_npoints(space.get());
  if (count < 0) fail(where, ": unreadable attribute");
  if (H5Tget_class(type.get()) != H5T_STRING) {
    if (count == 0) return {};  // old Keras writes an empty float array for "no weights"
    fail(where, ": expected a string attribute, found another type");
  }
  if (count > (1 << 24)) fail(where, ": attribute claims ", count, " strings");
  std::vector<std::string> out;
  if (H5Tis_variable_str(type.get()) > 0) {
    std::vector<char*> ptrs(count, nullptr);
    H5Handle mem(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    if (H5Aread(attr, mem.get(), ptrs.data()) < 0) fail(where, ": cannot read string attribute");
    for (char* p : ptrs) out.emplace_back(p ? p : "");
    H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, ptrs.data());
  } else {
    std::size_t size = H5Tget_size(type.get());
    if (size == 0 || size > (1u << 30)) fail(where, ": bad string size ", size);
    std::vector<char> buffer(size * count + 1, '\0');
    H5Handle mem(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.get(), size);
    if (H5Aread(attr, mem.get(), buffer.data()) < 0) fail(where, ": cannot read string attribute");
    for (hssize_t i = 0; i < count; ++i) {
      const char* s = buffer.data() + i * size;
      std::size_t len = 0;
      while (len < size && s[len] != '\0') ++len;
      out.emplace_back(s, len);
    }
  }
  return out;
}

}  // namespace

std::string H5File::string_attribute(const std::string& object, const std::string& name) const {
  if (!has_attribute(object, name)) fail(where(object), ": attribute '", name, "' is missing");
  H5Handle attr(H5Aopen_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT));
  auto values = read_string_attr(attr.get(), where(object) + " attribute '" + name + "'");
  if (values.size() != 1) fail(where(object), ": attribute '", name, "' holds ", values.size(), " strings, expected 1");
  return values[0];
}

std::vector<std::string> H5File::string_list_attribute(const std::string& object, const std::string& name) const {
  if (!has_attribute(object, name)) fail(where(object), ": attribute '", name, "' is missing");
  H5Handle attr(H5Aopen_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT));
  return read_string_attr(attr.get(), where(object) + " attribute '" + name + "'");
}

void H5File::read_whole_structure() const {
  struct Walk {
    const H5File* file;
    std::vector<std::string> objects;
  } walk{this, {}};
  auto visit = [](hid_t, const char* name, const H5O_info_t*, void* data) -> herr_t {
    auto* w = static_cast<Walk*>(data);
    if (w->objects.size() > 100000) return 1;  // far more objects than any model file has
    w->objects.push_back(std::string("/") + (std::string(name) == "." ? "" : name));
    return 0;
  };
  H5Ovisit2(file_.get(), H5_INDEX_NAME, H5_ITER_NATIVE, visit, &walk, H5O_INFO_BASIC);  // partial is fine
  for (const auto& object : walk.objects) {
    H5Handle o(H5Oopen(file_.get(), object.c_str(), H5P_DEFAULT));
    if (!o.valid()) continue;
    const int attributes = H5Aget_num_attrs(o.get());
    for (int a = 0; a < attributes && a < 10000; ++a) {
      try {
        H5Handle attr(H5Aopen_by_idx(o.get(), ".", H5_INDEX_NAME, H5_ITER_NATIVE, a, H5P_DEFAULT, H5P_DEFAULT));
        if (!attr.valid()) continue;
        H5Handle type(H5Aget_type(attr.get()));
        if (H5Tget_class(type.get()) == H5T_STRING) read_string_attr(attr.get(), where(object));
      } catch (const Error&) {
      }
    }
    try {
      if (is_dataset(object)) dataset_shape(object);
    } catch (const Error&) {
    }
  }
  // The attributes the importer reads by name, also where the walk could not reach them.
  for (const char* object : {"/", "/model_weights"})
    for (const char* name : {"keras_version", "model_config", "layer_names", "backend"}) try {
        if (has_attribute(object, name)) string_list_attribute(object, name);
      } catch (const Error&) {
      }
}

std::vector<std::int64_t> H5File::dataset_shape(const std::string& dataset) const {
  H5Handle d(H5Dopen2(file_.get(), dataset.c_str(), H5P_DEFAULT));
  if (!d.valid()) fail(where(dataset), ": not a dataset");
  H5Handle space(H5Dget_space(d.get()));
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0 || rank > 32) fail(where(dataset), ": bad rank ", rank);
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return std::vector<std::int64_t>(dims.begin(), dims.end());
}

void H5File::check_readable(hid_t dataset, const std::string& name) const {
  if (dataset < 0) fail(where(name), ": cannot open dataset");
  H5Handle type(H5Dget_type(dataset));
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) fail(where(name), ": dataset is not numeric");
  const std::size_t type_bytes = H5Tget_size(type.get());
  if (type_bytes == 0 || type_bytes > 8) fail(where(name), ": numbers of ", type_bytes, " bytes (expected 1 to 8)");
  H5Handle plist(H5Dget_create_plist(dataset));
  if (plist.valid() && H5Pget_layout(plist.get()) == H5D_CHUNKED) {
    hsize_t chunk[H5S_MAX_RANK] = {0};
    const int rank = H5Pget_chunk(plist.get(), H5S_MAX_RANK, chunk);
    if (rank < 0) fail(where(name), ": unreadable chunk layout");
    double bytes = static_cast<double>(type_bytes);
    for (int i = 0; i < rank; ++i) bytes *= static_cast<double>(chunk[i]);
    if (bytes > 256.0 * (1 << 20))
      fail(where(name), ": chunks of ", static_cast<long long>(bytes), " bytes (more than 256 MB: a damaged file?)");
  }
}

std::vector<float> H5File::read_floats(const std::string& dataset, std::size_t max_elements) const {
  if (!is_dataset(dataset)) fail(where(dataset), ": no such dataset");
  auto shape = dataset_shape(dataset);
  std::size_t count = 1;
  for (auto d : shape) {
    if (d < 0 || (d > 0 && count > max_elements / static_cast<std::size_t>(d)))
      fail(where(dataset), ": dataset claims more than ", max_elements, " values");
    count *= static_cast<std::size_t>(d);
  }
  H5Handle d(H5Dopen2(file_.get(), dataset.c_str(), H5P_DEFAULT));
  check_readable(d.get(), dataset);
  std::vector<float> values(count);
  if (count > 0 && H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0)
    fail(where(dataset), ": cannot read data (truncated file?)");
  return values;
}

std::vector<float> H5File::read_floats_slice(const std::string& dataset, int axis, std::int64_t begin,
                                             std::int64_t end) const {
  if (!is_dataset(dataset)) fail(where(dataset), ": no such dataset");
  auto shape = dataset_shape(dataset);
  if (axis < 0 || axis >= static_cast<int>(shape.size()) || begin < 0 || end > shape[axis] || begin >= end)
    fail(where(dataset), ": slice [", begin, ", ", end, ") on axis ", axis, " does not fit the dataset");
  std::vector<std::int64_t> offset(shape.size(), 0), count = shape;
  offset[axis] = begin;
  count[axis] = end - begin;
  return read_floats_block(dataset, offset, count);
}

std::vector<float> H5File::read_floats_block(const std::string& dataset, const std::vector<std::int64_t>& offset,
                                             const std::vector<std::int64_t>& count) const {
  if (!is_dataset(dataset)) fail(where(dataset), ": no such dataset");
  const auto shape = dataset_shape(dataset);
  if (offset.size() != shape.size() || count.size() != shape.size())
    fail(where(dataset), ": a block of rank ", offset.size(), " for a dataset of rank ", shape.size());
  std::size_t total = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (offset[i] < 0 || count[i] <= 0 || offset[i] + count[i] > shape[i])
      fail(where(dataset), ": block [", offset[i], ", ", offset[i] + count[i], ") on axis ", i,
           " does not fit the dataset");
    total *= static_cast<std::size_t>(count[i]);
  }
  const std::vector<hsize_t> start(offset.begin(), offset.end()), size(count.begin(), count.end());
  H5Handle d(H5Dopen2(file_.get(), dataset.c_str(), H5P_DEFAULT));
  check_readable(d.get(), dataset);
  H5Handle file_space(H5Dget_space(d.get()));
  if (H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, size.data(), nullptr) < 0)
    fail(where(dataset), ": cannot select slice");
  H5Handle mem_space(H5Screate_simple(static_cast<int>(size.size()), size.data(), nullptr));
  std::vector<float> values(total);
  if (H5Dread(d.get(), H5T_NATIVE_FLOAT, mem_space.get(), file_space.get(), H5P_DEFAULT, values.data()) < 0)
    fail(where(dataset), ": cannot read slice (truncated file?)");
  return values;
}

void H5File::create_group(const std::string& group) {
  if (exists(group)) return;
  H5Handle lcpl(H5Pcreate(H5P_LINK_CREATE));
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  H5Handle g(H5Gcreate2(file_.get(), group.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!g.valid()) fail(where(group), ": cannot create group");
}

void H5File::write_string_attribute(const std::string& object, const std::string& name, const std::string& value) {
  H5Handle obj = open_object(object);
  H5Handle type(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  H5Handle space(H5Screate(H5S_SCALAR));
  H5Handle attr(H5Acreate2(obj.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  const char* p = value.c_str();
  if (!attr.valid() || H5Awrite(attr.get(), type.get(), &p) < 0) fail(where(object), ": cannot write attribute ", name);
}

void H5File::write_string_list_attribute(const std::string& object, const std::string& name,
                                         const std::vector<std::string>& values) {
  H5Handle obj = open_object(object);
  // Fixed-length strings, as Keras 2 writes layer_names and weight_names.
  std::size_t size = 1;
  for (const auto& v : values) size = std::max(size, v.size());
  std::vector<char> buffer(size * values.size(), '\0');
  for (std::size_t i = 0; i < values.size(); ++i) values[i].copy(buffer.data() + i * size, values[i].size());
  H5Handle type(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.get(), size);
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  hsize_t dims[1] = {values.size()};
  H5Handle space(H5Screate_simple(1, dims, nullptr));
  H5Handle attr(H5Acreate2(obj.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!attr.valid() || (!values.empty() && H5Awrite(attr.get(), type.get(), buffer.data()) < 0))
    fail(where(object), ": cannot write attribute ", name);
}

void H5File::write_floats(const std::string& dataset, const std::vector<std::int64_t>& shape, const float* data) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  H5Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  H5Handle lcpl(H5Pcreate(H5P_LINK_CREATE));
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  H5Handle d(
      H5Dcreate2(file_.get(), dataset.c_str(), H5T_IEEE_F32LE, space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!d.valid() || H5Dwrite(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail(where(dataset), ": cannot write dataset");
}

}  // namespace chorus::io
