// The one-rank Transport: a plain `chorus run` runs the same pipeline code with every
// hand-off local, so it needs no MPI at all.
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "core/error.h"
#include "runtime/transport.h"

namespace chorus::runtime {

namespace {

class LocalTransport : public Transport {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string host() const override {
    char name[256] = {0};
    gethostname(name, sizeof name - 1);
    return name;
  }
  Request isend(int, int, const void*, std::size_t) override { CHORUS_ASSERT(false, "send in a one-rank run"); }
  Request irecv(int, int, void*, std::size_t) override { CHORUS_ASSERT(false, "receive in a one-rank run"); }
  std::size_t wait(Request, double) override { CHORUS_ASSERT(false, "wait in a one-rank run"); }
  bool test(Request) override { return true; }
  bool ready(Request) override { return true; }
  int max_all(int value) override { return value; }
  std::vector<std::string> gather_strings(const std::string& mine, int) override { return {mine}; }
  std::vector<std::string> all_gather_strings(const std::string& mine) override { return {mine}; }
  double time() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  [[noreturn]] void abort(int code) override { std::_Exit(code); }
};

}  // namespace

std::unique_ptr<Transport> make_local_transport() { return std::make_unique<LocalTransport>(); }

}  // namespace chorus::runtime
