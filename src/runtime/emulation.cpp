#include "runtime/emulation.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "core/error.h"

namespace chorus::runtime {

namespace {

double now() { return partition::steady_seconds(); }

void sleep_until(double t) {
  const double wait = t - now();
  if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
}

// The time the shared medium becomes free, in shared memory so that all ranks on this host
// serialise their transfers on it.
class SharedMedium {
 public:
  explicit SharedMedium(long key) : name_("/chorus-medium-" + std::to_string(key)) {
    int fd = shm_open(name_.c_str(), O_CREAT | O_RDWR, 0600);
    if (fd < 0) fail("emulation: cannot open shared memory ", name_);
    if (ftruncate(fd, sizeof(std::atomic<std::int64_t>)) != 0) fail("emulation: cannot size shared memory");
    void* p = mmap(nullptr, sizeof(std::atomic<std::int64_t>), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) fail("emulation: cannot map shared memory");
    free_at_ = static_cast<std::atomic<std::int64_t>*>(p);
  }
  ~SharedMedium() {
    munmap(free_at_, sizeof(*free_at_));
    shm_unlink(name_.c_str());  // the first rank to finish removes the name; mappings stay valid
  }
  // Reserves `duration` seconds of the medium from `earliest` on; returns the start.
  double reserve(double earliest, double duration) {
    const auto ns = [](double s) { return static_cast<std::int64_t>(s * 1e9); };
    std::int64_t current = free_at_->load();
    std::int64_t start;
    do {
      start = std::max(current, ns(earliest));
    } while (!free_at_->compare_exchange_weak(current, start + ns(duration)));
    return start / 1e9;
  }

 private:
  std::string name_;
  std::atomic<std::int64_t>* free_at_ = nullptr;
};

class EmulatedTransport : public Transport {
 public:
  EmulatedTransport(Transport& inner, const cluster::NetworkModel& network, long key)
      : inner_(inner), network_(network) {
    if (network.shared) medium_ = std::make_unique<SharedMedium>(key);
    pending_.reserve(1024);
    free_.reserve(1024);
  }

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  std::string host() const override { return inner_.host(); }

  Request isend(int dest, int tag, const void* data, std::size_t bytes) override {
    // The message occupies the medium (or this sender's link) for bytes / bandwidth, then
    // arrives after the latency; the arrival time travels in front of the payload.
    const double duration = network_.transfer_seconds(static_cast<double>(bytes));
    const double start = medium_ ? medium_->reserve(now(), duration) : std::max(now(), link_free_at_);
    if (!medium_) link_free_at_ = start + duration;
    const double arrival = start + duration + network_.latency_s;
    const Request r = add(sizeof(double) + bytes);
    Pending& p = pending_[r];
    p.buffer.resize(sizeof(double) + bytes);
    std::memcpy(p.buffer.data(), &arrival, sizeof arrival);
    std::memcpy(p.buffer.data() + sizeof arrival, data, bytes);
    p.inner = inner_.isend(dest, tag, p.buffer.data(), p.buffer.size());
    return r;
  }

  Request irecv(int source, int tag, void* data, std::size_t capacity) override {
    const Request r = add(sizeof(double) + capacity);
    Pending& p = pending_[r];
    p.receive = true;
    p.user = data;
    p.buffer.resize(sizeof(double) + capacity);
    p.inner = inner_.irecv(source, tag, p.buffer.data(), p.buffer.size());
    return r;
  }

  std::size_t wait(Request r, double timeout_s) override {
    Pending& p = pending_.at(r);
    if (!p.inner_done) {
      p.bytes = inner_.wait(p.inner, timeout_s);
      p.inner_done = true;
    }
    return finish(r, true);
  }

  bool test(Request r) override {
    Pending& p = pending_.at(r);
    if (!p.inner_done) {
      if (!inner_.test(p.inner)) return false;
      p.inner_done = true;
      p.bytes = 0;  // the inner test does not report sizes; receivers size by their header
      p.size_unknown = true;
    }
    if (p.receive && now() < arrival_of(p)) return false;
    finish(r, false);
    return true;
  }

  bool ready(Request r) override {
    Pending& p = pending_.at(r);
    if (!p.inner_done) {
      if (!inner_.ready(p.inner)) return false;
      p.bytes = inner_.wait(p.inner, 0);  // at once, with its size
      p.inner_done = true;
    }
    return !p.receive || now() >= arrival_of(p);
  }

  int max_all(int value) override { return inner_.max_all(value); }
  std::vector<std::string> all_gather_strings(const std::string& mine) override {
    return inner_.all_gather_strings(mine);
  }
  std::vector<std::string> gather_strings(const std::string& mine, int root) override {
    return inner_.gather_strings(mine, root);
  }
  double time() const override { return inner_.time(); }
  [[noreturn]] void abort(int code) override {
    inner_.abort(code);
    std::_Exit(code);
  }

 private:
  // Requests index a pool whose entries (and their buffers) are reused once released, so the
  // steady state allocates nothing.
  struct Pending {
    bool in_use = false;
    Transport::Request inner = -1;
    bool receive = false, inner_done = false, size_unknown = false;
    void* user = nullptr;
    std::vector<char> buffer;
    std::size_t bytes = 0;
  };

  // A free entry; every free buffer holds the largest message so far (messages of several
  // sizes share the pool). How many messages are in flight at once changes with the timing: a
  // rank that falls behind leaves more of its peers' sends open. So the pool doubles when it runs
  // out, and a steady-state frame allocates only if it has twice as many in flight as any before.
  Request add(std::size_t bytes) {
    if (bytes > largest_) {
      largest_ = bytes;
      for (Request f : free_) {
        pending_[f].buffer.clear();  // nothing in it to keep: reserve copies none
        pending_[f].buffer.reserve(largest_);
      }
    }
    if (free_.empty()) {
      const std::size_t grow = std::max<std::size_t>(2, pending_.size());
      for (std::size_t k = 0; k < grow; ++k) {
        pending_.emplace_back();
        pending_.back().buffer.reserve(largest_);
        free_.push_back(static_cast<Request>(pending_.size() - 1));
      }
    }
    const Request r = free_.back();
    free_.pop_back();
    Pending& p = pending_[r];
    p.in_use = true;
    p.inner = -1;
    p.receive = p.inner_done = p.size_unknown = false;
    p.user = nullptr;
    p.bytes = 0;
    return r;
  }
  static double arrival_of(const Pending& p) {
    double arrival;
    std::memcpy(&arrival, p.buffer.data(), sizeof arrival);
    return arrival;
  }
  std::size_t finish(Request r, bool sleep) {
    Pending& p = pending_.at(r);
    p.in_use = false;
    free_.push_back(r);
    std::size_t payload = 0;
    if (p.receive) {
      if (sleep) sleep_until(arrival_of(p));
      payload = p.size_unknown ? p.buffer.size() - sizeof(double) : p.bytes - sizeof(double);
      std::memcpy(p.user, p.buffer.data() + sizeof(double), payload);
    }
    // An entry taken before the largest message grew keeps that size until it is free again.
    if (p.buffer.capacity() < largest_) {
      p.buffer.clear();
      p.buffer.reserve(largest_);
    }
    return payload;
  }

  Transport& inner_;
  cluster::NetworkModel network_;
  std::unique_ptr<SharedMedium> medium_;
  double link_free_at_ = 0;
  std::vector<Pending> pending_;
  std::vector<Request> free_;
  std::size_t largest_ = 0;  // bytes of the largest message so far, header included
};

}  // namespace

DevicePacer::DevicePacer(const cluster::DeviceProfile& profile, const model::Model& model, std::string model_key)
    : profile_(profile), model_(model), key_(std::move(model_key)) {
  for (std::size_t n = 0; n < model.nodes().size(); ++n)
    seconds_.push_back(profile.layer_time(model, key_, static_cast<int>(n)));
  // This (the computing) thread's sleeps end within 1 us of their time instead of the kernel's
  // default 50 us slack: a split stage paces hundreds of layer parts a frame.
  prctl(PR_SET_TIMERSLACK, 1000UL);
}

void DevicePacer::layer_done(int node, double share, double started) {
  // A layer begun right after the previous one's pacing ended (no wait in between) began, on the
  // device, when that one's time was up: the sleep's overshoot (the kernel waking the thread
  // late, some 40 us here) is the host's, and would otherwise add up over a frame's parts.
  if (started >= woke_ && started - woke_ < kBackToBack_s) started -= overshoot_;
  const double target = seconds_.at(node) * share;
  const double elapsed = now() - started;
  ++paced_;
  paced_seconds_ += target;
  if (elapsed > target && target > 0) {
    ++late_;
    late_seconds_ += elapsed - target;
    worst_ = std::max(worst_, elapsed / target);
  }
  sleep_until(started + target);
  woke_ = now();
  overshoot_ = std::max(0.0, woke_ - (started + target));
}

void DevicePacer::layer_progress(int node, double share, double started, double fraction) {
  // Only waits: lateness is counted once, when the layer is done.
  sleep_until(started + seconds_.at(node) * share * fraction);
}

std::unique_ptr<Transport> make_emulated_transport(Transport& inner, const cluster::NetworkModel& network,
                                                   long job_key) {
  return std::make_unique<EmulatedTransport>(inner, network, job_key);
}

}  // namespace chorus::runtime
