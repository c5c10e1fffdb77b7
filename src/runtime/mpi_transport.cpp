// MPI implementation of Transport: the only place (with main) that talks MPI.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "runtime/transport.h"

namespace chorus::runtime {

std::unique_ptr<Transport> make_local_transport();

namespace {

// Over TCP, Open MPI sends a message above btl_tcp_eager_limit (64 KB) only after a handshake
// with the receiver (rendezvous), and on a shared medium such as WiFi each handshake waits in
// the same queue as the data of every other device: a split stage's halo rows (75-225 KB a
// swap for Xception's early layers) then took +12.6 % over the planner's prediction on the
// testbed's shaped TCP, -0.3 % to +1.9 % when sent eagerly. Messages up to 4 MiB go eagerly
// (the runtime posts its receives ahead, so few arrive unexpected and wait in Open MPI's buffers);
// a value the user set (mpirun --mca, or the environment) wins.
void use_eager_tcp_messages() {
  setenv("OMPI_MCA_btl_tcp_eager_limit", "4194304", /*overwrite=*/0);
  setenv("OMPI_MCA_btl_tcp_max_send_size", "4194304", /*overwrite=*/0);
}

// A rank computes for tens of milliseconds between its MPI calls. Open MPI moves a large message
// only inside MPI calls on both sides, over TCP always, and over shared memory unless it copies
// the message in one go (CMA, which it did not choose by default on a 16-core VM). A send then
// waited for the sender's next call, and a pipeline's stages took turns instead of overlapping
// (VGG16 in 2 stages on that VM: 3.0-3.3 frames/s, 5.0-5.4 with this thread). So a progress
// thread tests the pending requests while the rank computes, every 50-200 us. MPI is
// initialised MPI_THREAD_SERIALIZED and every call holds `mutex_`.
class MpiTransport : public Transport {
 public:
  MpiTransport(int* argc, char*** argv) {
    use_eager_tcp_messages();
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    // Errors come back as codes and become exceptions with a message, not silent aborts.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    char name[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    MPI_Get_processor_name(name, &len);
    host_.assign(name, len);
    clock_skew_s_ = test_clock_skew(rank_);
    // Request slots are reused; room for the requests of a deep pipeline, so that the steady
    // state does not grow these lists.
    slots_.reserve(1024);
    free_.reserve(1024);
    if (provided >= MPI_THREAD_SERIALIZED) progress_ = std::thread([this] { progress_loop(); });
  }
  ~MpiTransport() override {
    if (progress_.joinable()) {
      {
        std::lock_guard lock(mutex_);
        stop_ = true;
      }
      progress_wake_.notify_all();
      progress_.join();
    }
    MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string host() const override { return host_; }

  Request isend(int dest, int tag, const void* data, std::size_t bytes) override {
    std::lock_guard lock(mutex_);
    Request r = slot();
    check(MPI_Isend(data, static_cast<int>(bytes), MPI_BYTE, dest, tag, MPI_COMM_WORLD, &slots_[r].request),
          "MPI_Isend");
    posted();
    return r;
  }
  Request irecv(int source, int tag, void* data, std::size_t capacity) override {
    std::lock_guard lock(mutex_);
    Request r = slot();
    check(MPI_Irecv(data, static_cast<int>(capacity), MPI_BYTE, source, tag, MPI_COMM_WORLD, &slots_[r].request),
          "MPI_Irecv");
    posted();
    return r;
  }
  std::size_t wait(Request r, double timeout_s) override {
    // Test, then sleep a growing while (woken early when the progress thread sees the request
    // end) instead of MPI_Wait's busy loop: oversubscribed ranks (nine emulated devices on two
    // cores) must leave the CPU to the ranks that compute.
    std::unique_lock lock(mutex_);
    const double deadline = timeout_s > 0 ? MPI_Wtime() + timeout_s : 0;
    for (int spins = 0;; ++spins) {
      if (test_locked(r)) break;
      if (deadline > 0 && MPI_Wtime() > deadline) fail("no message within ", timeout_s, " s");
      if (spins > 20)
        ended_.wait_for(lock, std::chrono::microseconds(std::min(2000, 20 * (spins - 20))),
                        [&] { return slots_[r].ended; });
    }
    const std::size_t bytes = slots_[r].bytes;
    release(r);
    return bytes;
  }
  bool test(Request r) override {
    std::lock_guard lock(mutex_);
    if (!test_locked(r)) return false;
    release(r);
    return true;
  }
  bool ready(Request r) override {
    std::lock_guard lock(mutex_);
    return test_locked(r);
  }
  int max_all(int value) override {
    std::lock_guard lock(mutex_);
    int out = value;
    check(MPI_Allreduce(&value, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
    return out;
  }
  std::vector<std::string> gather_strings(const std::string& mine, int root) override {
    std::lock_guard lock(mutex_);
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
    std::lock_guard lock(mutex_);
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
  // The wall clock, not MPI_Wtime: Open MPI's MPI_Wtime counts from an origin each process sets
  // for itself (its first call), so a frame's start on the source rank and its finish on the
  // sink rank were on two clocks and a latency could come out negative. The wall clock is one
  // clock on a host; across hosts the run measures each rank's offset from rank 0's
  // (runtime/clock_offsets.h) and corrects frame times with it.
  double time() const override {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count() +
           clock_skew_s_;
  }
  [[noreturn]] void abort(int code) override {
    std::lock_guard lock(mutex_);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  static constexpr auto kMinPollInterval = std::chrono::microseconds(50);
  static constexpr auto kMaxPollInterval = std::chrono::microseconds(200);

  struct Slot {
    MPI_Request request = MPI_REQUEST_NULL;
    bool in_use = false;
    bool ended = false;     // the request completed (found by either thread)
    std::size_t bytes = 0;  // for a receive, what arrived
  };

  // The caller holds mutex_ for all of these.
  Request slot() {
    Request r;
    if (!free_.empty()) {
      r = free_.back();
      free_.pop_back();
    } else {
      slots_.emplace_back();
      r = static_cast<Request>(slots_.size() - 1);
    }
    slots_[r] = Slot{MPI_REQUEST_NULL, true, false, 0};
    return r;
  }
  void release(Request r) {
    slots_[r].in_use = false;
    free_.push_back(r);
  }
  bool test_locked(Request r) {
    Slot& s = slots_[r];
    if (s.ended) return true;
    int done = 0;
    MPI_Status status;
    check(MPI_Test(&s.request, &done, &status), "MPI_Test");
    if (!done) return false;
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    s.bytes = count == MPI_UNDEFINED ? 0 : static_cast<std::size_t>(count);
    s.ended = true;
    return true;
  }
  void posted() {
    poll_interval_ = kMinPollInterval;
    progress_wake_.notify_one();
  }

  // Tests every pending request while any is pending; sleeps on progress_wake_ while none is.
  // The interval doubles while nothing ends, up to 200 us: a 12.8 MB frame over shared memory
  // without single copy moves a few fragments per test, and at 1 ms its transfer took 31 ms
  // of a 108 ms frame (4 ms at 200 us, none gained at 50 us).
  void progress_loop() {
    std::unique_lock lock(mutex_);
    while (!stop_) {
      bool pending = false, ended = false;
      for (std::size_t r = 0; r < slots_.size(); ++r) {
        if (!slots_[r].in_use || slots_[r].ended) continue;
        try {
          if (test_locked(static_cast<Request>(r))) ended = true;
          else pending = true;
        } catch (const Error&) {
          // The rank's own wait() or test() on this request reports the error with its context.
          pending = false;
          break;
        }
      }
      if (ended) {
        ended_.notify_all();
        poll_interval_ = kMinPollInterval;
      }
      if (!pending) {
        progress_wake_.wait(lock);
        continue;
      }
      progress_wake_.wait_for(lock, poll_interval_);
      poll_interval_ = std::min(kMaxPollInterval, poll_interval_ * 2);
    }
  }

  void check(int code, const char* what) const {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    fail(what, " failed on rank ", rank_, ": ", std::string(text, len));
  }

  // Tests only: CHORUS_TEST_CLOCK_SKEW="RANK:SECONDS[,RANK:SECONDS...]" sets those ranks' clocks
  // off by that much, as separate hosts' clocks are, so that the clock offset estimate and the
  // latency correction can be checked on one machine (where every clock is one).
  static double test_clock_skew(int rank) {
    const char* spec = std::getenv("CHORUS_TEST_CLOCK_SKEW");
    if (!spec) return 0;
    for (const char* p = spec; *p;) {
      char* end = nullptr;
      const long r = std::strtol(p, &end, 10);
      if (end == p || *end != ':') break;
      const double seconds = std::strtod(end + 1, &end);
      if (r == rank) return seconds;
      p = *end == ',' ? end + 1 : end;
      if (*end != ',') break;
    }
    return 0;
  }

  int rank_ = 0, size_ = 1;
  double clock_skew_s_ = 0;
  std::string host_;
  mutable std::mutex mutex_;  // held for every MPI call
  std::vector<Slot> slots_;
  std::vector<Request> free_;
  std::thread progress_;
  std::condition_variable progress_wake_;  // a request was posted, or stop_
  std::condition_variable ended_;          // the progress thread saw a request end
  std::chrono::microseconds poll_interval_ = kMinPollInterval;
  bool stop_ = false;
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
