#pragma once
// Reads members of a zip archive (Keras 3's .keras files: config.json, metadata.json,
// model.weights.h5). The archive is mapped, not read: a stored member is used in place, so a
// large weights file is neither unpacked to disk nor copied, and only the pages a rank reads
// are touched. Deflated members are inflated into memory (zlib) and cost their size.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace chorus::io {

struct ZipMember {
  std::string name;
  std::uint16_t method = 0;  // 0 stored, 8 deflated
  std::uint64_t compressed_size = 0, size = 0;
  std::uint32_t crc32 = 0;
  std::uint64_t header_offset = 0;  // of its local header
};

class ZipArchive {
 public:
  // Maps `path` and reads its central directory; throws chorus::Error naming the file when it
  // is not a zip archive or is truncated.
  explicit ZipArchive(const std::string& path);
  ~ZipArchive();
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<ZipMember>& members() const { return members_; }
  const ZipMember* find(const std::string& name) const;
  // The member's bytes, inflated if deflated, checked against its CRC-32. Throws naming the
  // archive and the member when it is missing or damaged.
  std::vector<char> read(const std::string& name) const;
  // A stored member's bytes in place (valid while the archive lives), or null for a deflated
  // one; checked against its CRC-32 once per process (read through the file, not the mapping).
  const char* stored_bytes(const std::string& name, std::uint64_t* size) const;
  // Lets the kernel drop the pages of the mapping read so far: they are the page cache's, and
  // are read again from it when touched, but while mapped they count in the process' RSS.
  void release_pages() const;

 private:
  const ZipMember& member(const std::string& name) const;
  // Where a member's data starts, from its local header.
  std::uint64_t data_offset(const ZipMember& m) const;

  std::string path_;
  int fd_ = -1;           // the mapped file, open while the archive lives
  std::string identity_;  // device, inode, size and modification time of that file
  const unsigned char* data_ = nullptr;
  std::uint64_t size_ = 0;
  std::vector<ZipMember> members_;
};

// Writes a zip archive, members stored or deflated (`chorus init-weights -o model.keras`).
class ZipWriter {
 public:
  explicit ZipWriter(const std::string& path);
  ~ZipWriter();
  ZipWriter(const ZipWriter&) = delete;
  ZipWriter& operator=(const ZipWriter&) = delete;
  void add(const std::string& name, const std::vector<char>& data, bool compress);
  // Writes the central directory; the archive is complete only after this.
  void finish();

 private:
  std::string path_;
  std::FILE* out_ = nullptr;
  std::vector<ZipMember> written_;
  std::uint64_t offset_ = 0;
};

}  // namespace chorus::io
