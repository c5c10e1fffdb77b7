#include "io/keras/zip_archive.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>

#include "core/error.h"

namespace chorus::io {

namespace {

// Zip's little-endian fields, read from `p` (no alignment assumed).
std::uint64_t le(const unsigned char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

constexpr std::uint32_t kEndOfDirectory = 0x06054b50, kZip64End = 0x06064b50, kZip64Locator = 0x07064b50;
constexpr std::uint32_t kDirectoryEntry = 0x02014b50, kLocalHeader = 0x04034b50;

// The largest member that is inflated into memory: a corrupt size must not allocate without
// bound.
constexpr std::uint64_t kMaxInflated = std::uint64_t{16} << 30;

}  // namespace

ZipArchive::ZipArchive(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, ": cannot open (", std::strerror(errno), ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
    ::close(fd);
    fail(path, ": cannot read (empty or not a regular file)");
  }
  size_ = static_cast<std::uint64_t>(st.st_size);
  void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  if (mapped == MAP_FAILED) {
    ::close(fd);
    fail(path, ": cannot map (", std::strerror(errno), ")");
  }
  fd_ = fd;  // kept: a stored member's CRC is read through it (stored_bytes)
  identity_ = cat(st.st_dev, ":", st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
  data_ = static_cast<const unsigned char*>(mapped);
  try {
    // The end-of-central-directory record: the last 22 bytes, or before a comment of up to 64 KB.
    std::uint64_t end = size_;
    bool found = false;
    for (std::uint64_t at = size_ >= 22 ? size_ - 22 : 0; size_ >= 22; --at) {
      if (le(data_ + at, 4) == kEndOfDirectory) {
        end = at;
        found = true;
        break;
      }
      if (at == 0 || size_ - at > 22 + 65535) break;
    }
    if (!found) fail(path, ": not a zip archive (no end-of-central-directory record; truncated, or another format)");
    std::uint64_t entries = le(data_ + end + 10, 2), dir_size = le(data_ + end + 12, 4),
                  dir_offset = le(data_ + end + 16, 4);
    if ((entries == 0xffff || dir_offset == 0xffffffff) && end >= 20 && le(data_ + end - 20, 4) == kZip64Locator) {
      const std::uint64_t z64 = le(data_ + end - 20 + 8, 8);
      if (z64 + 56 > size_ || le(data_ + z64, 4) != kZip64End) fail(path, ": damaged zip64 end of directory");
      entries = le(data_ + z64 + 32, 8);
      dir_size = le(data_ + z64 + 40, 8);
      dir_offset = le(data_ + z64 + 48, 8);
    }
    if (dir_offset + dir_size > size_) fail(path, ": truncated zip archive (its directory lies past the end)");
    std::uint64_t at = dir_offset;
    for (std::uint64_t i = 0; i < entries; ++i) {
      if (at + 46 > size_ || le(data_ + at, 4) != kDirectoryEntry)
        fail(path, ": damaged zip directory (entry ", i, ")");
      ZipMember m;
      m.method = static_cast<std::uint16_t>(le(data_ + at + 10, 2));
      m.crc32 = static_cast<std::uint32_t>(le(data_ + at + 16, 4));
      m.compressed_size = le(data_ + at + 20, 4);
      m.size = le(data_ + at + 24, 4);
      const std::uint64_t name_len = le(data_ + at + 28, 2), extra_len = le(data_ + at + 30, 2),
                          comment_len = le(data_ + at + 32, 2);
      m.header_offset = le(data_ + at + 42, 4);
      if (at + 46 + name_len + extra_len > size_) fail(path, ": damaged zip directory (entry ", i, ")");
      m.name.assign(reinterpret_cast<const char*>(data_ + at + 46), name_len);
      // Zip64 sizes and offset, in that order, for the fields that overflowed.
      for (std::uint64_t e = at + 46 + name_len; e + 4 <= at + 46 + name_len + extra_len;) {
        const std::uint64_t id = le(data_ + e, 2), len = le(data_ + e + 2, 2);
        if (id == 0x0001) {
          std::uint64_t f = e + 4;
          if (m.size == 0xffffffff) m.size = le(data_ + f, 8), f += 8;
          if (m.compressed_size == 0xffffffff) m.compressed_size = le(data_ + f, 8), f += 8;
          if (m.header_offset == 0xffffffff) m.header_offset = le(data_ + f, 8);
        }
        e += 4 + len;
      }
      members_.push_back(std::move(m));
      at += 46 + name_len + extra_len + comment_len;
    }
  } catch (...) {
    ::munmap(const_cast<unsigned char*>(data_), size_);
    ::close(fd_);
    throw;
  }
}

ZipArchive::~ZipArchive() {
  ::munmap(const_cast<unsigned char*>(data_), size_);
  ::close(fd_);
}

const ZipMember* ZipArchive::find(const std::string& name) const {
  for (const auto& m : members_)
    if (m.name == name) return &m;
  return nullptr;
}

const ZipMember& ZipArchive::member(const std::string& name) const {
  const ZipMember* m = find(name);
  if (!m) {
    std::string names;
    for (const auto& x : members_) names += (names.empty() ? "" : ", ") + x.name;
    fail(path_, ": the archive has no member '", name, "' (it holds: ", names.empty() ? "nothing" : names, ")");
  }
  return *m;
}

std::uint64_t ZipArchive::data_offset(const ZipMember& m) const {
  if (m.header_offset + 30 > size_ || le(data_ + m.header_offset, 4) != kLocalHeader)
    fail(path_, ": member '", m.name, "': damaged local header");
  const std::uint64_t start =
      m.header_offset + 30 + le(data_ + m.header_offset + 26, 2) + le(data_ + m.header_offset + 28, 2);
  if (start + m.compressed_size > size_)
    fail(path_, ": member '", m.name, "' is truncated (", m.compressed_size, " bytes from offset ", start,
         " run past the archive's ", size_, ")");
  return start;
}

const char* ZipArchive::stored_bytes(const std::string& name, std::uint64_t* size) const {
  const ZipMember& m = member(name);
  if (m.method != 0) return nullptr;
  if (m.size != m.compressed_size) fail(path_, ": member '", name, "' is stored but its sizes differ");
  const std::uint64_t start = data_offset(m);
  // HDF5 checks its structure, not its data: a flipped byte in a weight would load silently.
  // The CRC reads the member through the archive's own descriptor into a small buffer, not
  // through the mapping, whose pages would count in the process' memory and fault in twice
  // (0.6 s more for VGG16; this way 0.08 s); once per process and file, since loading a model
  // opens its archive twice (structure, then weights).
  static std::mutex checked_mutex;
  static std::set<std::string> checked;
  const std::string key = cat(identity_, ":", name);
  {
    std::lock_guard<std::mutex> lock(checked_mutex);
    if (checked.count(key)) {
      *size = m.size;
      return reinterpret_cast<const char*>(data_ + start);
    }
  }
  std::vector<unsigned char> buffer(4 << 20);
  std::uint32_t crc = static_cast<std::uint32_t>(crc32(0, nullptr, 0));
  for (std::uint64_t at = 0; at < m.size;) {
    const ssize_t n = ::pread(fd_, buffer.data(), std::min<std::uint64_t>(buffer.size(), m.size - at),
                              static_cast<off_t>(start + at));
    if (n <= 0) fail(path_, ": member '", name, "' cannot be read to check its CRC (", std::strerror(errno), ")");
    crc = static_cast<std::uint32_t>(crc32_z(crc, buffer.data(), static_cast<std::size_t>(n)));
    at += static_cast<std::uint64_t>(n);
  }
  if (crc != m.crc32) fail(path_, ": member '", name, "' fails its CRC check (damaged)");
  {
    std::lock_guard<std::mutex> lock(checked_mutex);
    checked.insert(key);
  }
  const unsigned char* bytes = data_ + start;
  *size = m.size;
  return reinterpret_cast<const char*>(bytes);
}

void ZipArchive::release_pages() const { ::madvise(const_cast<unsigned char*>(data_), size_, MADV_DONTNEED); }

std::vector<char> ZipArchive::read(const std::string& name) const {
  const ZipMember& m = member(name);
  const std::uint64_t start = data_offset(m);
  std::vector<char> out;
  if (m.method == 0) {
    out.assign(data_ + start, data_ + start + m.compressed_size);
  } else if (m.method == 8) {
    if (m.size > kMaxInflated) fail(path_, ": member '", name, "' claims ", m.size, " bytes inflated; refusing");
    // Deflate packs at most 1032 bytes into one (its longest match per symbol): a member that
    // claims more is damaged, and is refused before its claimed size is allocated.
    if (m.size > m.compressed_size * 1032 + 64)
      fail(path_, ": member '", name, "' claims ", m.size, " bytes from ", m.compressed_size,
           " deflated, more than deflate can produce (damaged)");
    out.resize(m.size);
    z_stream z{};
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK) fail(path_, ": member '", name, "': cannot start zlib");
    z.next_in = const_cast<Bytef*>(data_ + start);
    z.avail_in = static_cast<uInt>(std::min<std::uint64_t>(m.compressed_size, UINT32_MAX));
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(std::min<std::uint64_t>(m.size, UINT32_MAX));
    const int status = inflate(&z, Z_FINISH);
    const std::uint64_t produced = z.total_out;
    inflateEnd(&z);
    if (status != Z_STREAM_END || produced != m.size)
      fail(path_, ": member '", name, "' does not inflate to its ", m.size, " bytes (damaged or truncated)");
  } else {
    fail(path_, ": member '", name, "' uses compression method ", m.method, " (only stored and deflated are read)");
  }
  const std::uint32_t crc =
      static_cast<std::uint32_t>(crc32_z(crc32(0, nullptr, 0), reinterpret_cast<const Bytef*>(out.data()), out.size()));
  if (crc != m.crc32) fail(path_, ": member '", name, "' fails its CRC check (damaged)");
  return out;
}

namespace {
void put(std::vector<unsigned char>& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
}  // namespace

ZipWriter::ZipWriter(const std::string& path) : path_(path), out_(std::fopen(path.c_str(), "wb")) {
  if (!out_) fail(path, ": cannot create (", std::strerror(errno), ")");
}

ZipWriter::~ZipWriter() {
  if (out_) std::fclose(out_);
}

void ZipWriter::add(const std::string& name, const std::vector<char>& data, bool compress) {
  ZipMember m;
  m.name = name;
  m.method = compress ? 8 : 0;
  m.size = data.size();
  m.crc32 = static_cast<std::uint32_t>(
      crc32_z(crc32(0, nullptr, 0), reinterpret_cast<const Bytef*>(data.data()), data.size()));
  std::vector<char> packed;
  if (compress) {
    z_stream z{};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      fail(path_, ": cannot start zlib");
    packed.resize(deflateBound(&z, data.size()));
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = static_cast<uInt>(data.size());
    z.next_out = reinterpret_cast<Bytef*>(packed.data());
    z.avail_out = static_cast<uInt>(packed.size());
    const int status = deflate(&z, Z_FINISH);
    packed.resize(z.total_out);
    deflateEnd(&z);
    if (status != Z_STREAM_END) fail(path_, ": member '", name, "' could not be deflated");
  }
  const std::vector<char>& body = compress ? packed : data;
  m.compressed_size = body.size();
  m.header_offset = offset_;
  if (m.size > 0xfffffffeu || offset_ + body.size() > 0xfffffffeu)
    fail(path_, ": member '", name, "' would need zip64 (over 4 GB), which this writer does not write");
  std::vector<unsigned char> header;
  put(header, kLocalHeader, 4);
  put(header, 20, 2);  // version needed
  put(header, 0, 2);   // flags
  put(header, m.method, 2);
  put(header, 0, 4);  // time and date
  put(header, m.crc32, 4);
  put(header, m.compressed_size, 4);
  put(header, m.size, 4);
  put(header, name.size(), 2);
  put(header, 0, 2);  // extra
  header.insert(header.end(), name.begin(), name.end());
  if (std::fwrite(header.data(), 1, header.size(), out_) != header.size() ||
      std::fwrite(body.data(), 1, body.size(), out_) != body.size())
    fail(path_, ": write failed (disk full?)");
  offset_ += header.size() + body.size();
  written_.push_back(std::move(m));
}

void ZipWriter::finish() {
  std::vector<unsigned char> dir;
  for (const auto& m : written_) {
    put(dir, kDirectoryEntry, 4);
    put(dir, 20, 2);  // made by
    put(dir, 20, 2);  // needed
    put(dir, 0, 2);
    put(dir, m.method, 2);
    put(dir, 0, 4);
    put(dir, m.crc32, 4);
    put(dir, m.compressed_size, 4);
    put(dir, m.size, 4);
    put(dir, m.name.size(), 2);
    put(dir, 0, 2);  // extra
    put(dir, 0, 2);  // comment
    put(dir, 0, 2);  // disk
    put(dir, 0, 2);  // internal attributes
    put(dir, 0, 4);  // external attributes
    put(dir, m.header_offset, 4);
    dir.insert(dir.end(), m.name.begin(), m.name.end());
  }
  const std::size_t dir_size = dir.size();
  put(dir, kEndOfDirectory, 4);
  put(dir, 0, 4);  // disks
  put(dir, written_.size(), 2);
  put(dir, written_.size(), 2);
  put(dir, dir_size, 4);
  put(dir, offset_, 4);
  put(dir, 0, 2);  // comment
  if (std::fwrite(dir.data(), 1, dir.size(), out_) != dir.size() || std::fclose(out_) != 0) {
    out_ = nullptr;
    fail(path_, ": write failed (disk full?)");
  }
  out_ = nullptr;
}

}  // namespace chorus::io
