#pragma once
// Errors: exceptions for load, plan and set-up problems; an always-on assert for invariants.
#include <sstream>
#include <stdexcept>
#include <string>

namespace chorus {

// Thrown for every user-facing failure; the message says where, what, expected and found.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates the arguments with operator<< into one string.
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

// Throws chorus::Error with the concatenated arguments as its message.
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(args...));
}

// A JSON library's message without its id ("[json.exception.out_of_range.403] key 'name' not
// found" -> "key 'name' not found"): users read the second half, the first is for its authors.
std::string without_error_id(const std::string& what);

// Throws "PATH: is a directory, not WHAT" ("a plan file") when `path` names a directory:
// reading one as a file fails deep in the standard library with a message that names neither.
void refuse_directory(const std::string& path, const std::string& what);

// The exit code of a run stopped on request at a frame boundary (runtime/stop_request.h), which
// `--resume` continues; chorus supervise tells it from a failure. sysexits.h's EX_TEMPFAIL.
constexpr int kStoppedExitCode = 75;

// Called by CHORUS_ASSERT; an internal invariant broke, so this is a bug in Chorus.
[[noreturn]] void assert_failed(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace chorus

// Always on, also in Release builds: a broken invariant must never run on silently.
#define CHORUS_ASSERT(cond, ...)                                                       \
  do {                                                                                 \
    if (!(cond)) ::chorus::assert_failed(#cond, __FILE__, __LINE__, ::chorus::cat("" __VA_ARGS__)); \
  } while (0)
