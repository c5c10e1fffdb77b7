// MPI implementation of Transport: the only place (with main) that talks MPI.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "core/error.h"
#include "runtime/transport.h"

namespace chorus::runtime {

std::unique_ptr<Transport> make_local_transport();

namespace {

class MpiTransport : public Transport {
 public:
  MpiTransport(int* argc, char*** argv) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    // Errors come back as codes and become exceptions with a message, not silent aborts.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    char name[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    MPI_Get_processor_name(name, &len);
    host_.assign(name, len);
  }
  ~MpiTransport() override { MPI_Finalize(); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string host() const override { return host_; }

  Request isend(int dest, int tag, const void* data, std::size_t bytes) override {
    Request r = slot();
    check(MPI_Isend(data, static_cast<int>(bytes), MPI_BYTE, dest, tag, MPI_COMM_WORLD, &requests_[r]), "MPI_Isend");
    return r;
  }
  Request irecv(int source, int tag, void* data, std::size_t capacity) override {
    Request r = slot();
    check(MPI_Irecv(data, static_cast<int>(capacity), MPI_BYTE, source, tag, MPI_COMM_WORLD, &requests_[r]),
          "MPI_Irecv");
    return r;
  }
  std::size_t wait(Request r, double timeout_s) override {
    // Poll with a growing sleep instead of MPI_Wait's busy loop: oversubscribed ranks (nine
    // emulated devices on two cores) must leave the CPU to the ranks that compute.
    MPI_Status status;
    int done = 0;
    const double deadline = timeout_s > 0 ? MPI_Wtime() + timeout_s : 0;
    for (int spins = 0;; ++spins) {
      check(MPI_Test(&requests_[r], &done, &status), "MPI_Test");
      if (done) break;
      if (deadline > 0 && MPI_Wtime() > deadline) fail("no message within ", timeout_s, " s");
      if (spins > 20) std::this_thread::sleep_for(std::chrono::microseconds(std::min(2000, 20 * (spins - 20))));
    }
    free_.push_back(r);
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    return count == MPI_UNDEFINED ? 0 : static_cast<std::size_t>(count);
  }
  bool test(Request r) override {
    int done = 0;
    check(MPI_Test(&requests_[r], &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done) free_.push_back(r);
    return done != 0;
  }
  int max_all(int value) override {
    int out = value;
    check(MPI_Allreduce(&value, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
    return out;
  }
  std::vector<std::string> gather_strings(const std::string& mine, int root) override {
    int length = static_cast<int>(mine.size());
    std::vector<int> lengths(size_), offsets(size_);
    check(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, root, MPI_COMM_WORLD), "MPI_Gather");
    std::vector<char> all;
    if (rank_ == root) {
      int total = 0;
      for (int i = 0; i < size_; ++i) offsets[i] = total, total += lengths[i];
      all.resize(total);
    }
    check(MPI_Gatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, root,
                      MPI_COMM_WORLD),
          "MPI_Gatherv");
    std::vector<std::string> out;
    if (rank_ == root)
      for (int i = 0; i < size_; ++i) out.emplace_back(all.data() + offsets[i], lengths[i]);
    return out;
  }
  std::vector<std::string> all_gather_strings(const std::string& mine) override {
    int length = static_cast<int>(mine.size());
    std::vector<int> lengths(size_), offsets(size_);
    check(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
    int total = 0;
    for (int i = 0; i < size_; ++i) offsets[i] = total, total += lengths[i];
    std::vector<char> all(std::max(total, 1));
    check(MPI_Allgatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
                         MPI_COMM_WORLD),
          "MPI_Allgatherv");
    std::vector<std::string> out;
    for (int i = 0; i < size_; ++i) out.emplace_back(all.data() + offsets[i], lengths[i]);
    return out;
  }
  double time() const override { return MPI_Wtime(); }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  Request slot() {
    if (!free_.empty()) {
      Request r = free_.back();
      free_.pop_back();
      return r;
    }
    requests_.push_back(MPI_REQUEST_NULL);
    return static_cast<Request>(requests_.size() - 1);
  }
  void check(int code, const char* what) const {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    fail(what, " failed on rank ", rank_, ": ", std::string(text, len));
  }

  int rank_ = 0, size_ = 1;
  std::string host_;
  std::vector<MPI_Request> requests_;
  std::vector<Request> free_;
};

}  // namespace

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(var)) return true;
  return false;
}

std::unique_ptr<Transport> make_transport(int* argc, char*** argv) {
  if (launched_by_mpi()) return std::make_unique<MpiTransport>(argc, argv);
  return make_local_transport();
}

}  // namespace chorus::runtime
