#include "core/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/threads.h"

namespace chorus {

namespace {

thread_local bool in_task = false;

// Workers spin this long after a job before sleeping: layers follow each other within
// microseconds, and a futex wake per layer would cost more than small layers take. A rank that
// waits for MPI longer than this lets its workers sleep.
constexpr std::chrono::microseconds kSpinTime{2000};

class ThreadPool {
 public:
  explicit ThreadPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }

  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // False, having run nothing, when another thread has the pool (threads standing for ranks in
  // tests): that caller then runs its tasks alone.
  bool try_run(int tasks, FunctionRef<void(int)> task) {
    std::unique_lock<std::mutex> owner(run_mutex_, std::try_to_lock);
    if (!owner.owns_lock()) return false;
    task_ = &task;  // lives on the caller's stack until every worker has left
    tasks_ = tasks;
    next_.store(0);
    error_ = nullptr;
    open_.store(true);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    take_tasks();
    // Every task is taken: a worker that has not joined by now stays out, so a worker whose
    // core is busy with another process does not hold up the layer until it is scheduled
    // (a busy loop on one of 2 cores had made frames of MobileNetV2 take 5 times their median).
    // Those that joined must leave before `task` goes out of scope.
    open_.store(false);
    while (joined_.load() > 0) std::this_thread::yield();
    if (error_) std::rethrow_exception(error_);
    return true;
  }

  // Runs `f` once on every thread of the pool, the caller's included, and returns when all have.
  // Waits for a caller that has the pool to finish its job.
  void run_on_each(FunctionRef<void()> f) {
    std::lock_guard<std::mutex> owner(run_mutex_);
    each_left_.store(static_cast<int>(workers_.size()));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      each_generation_.store(generation_.load() + 1);
      each_.store(&f);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    f();
    while (each_left_.load() > 0) std::this_thread::yield();
    each_.store(nullptr);
  }

 private:
  void take_tasks() {
    in_task = true;
    for (int i; (i = next_.fetch_add(1)) < tasks_;) {
      try {
        (*task_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
    in_task = false;
  }

  void work() {
    std::uint64_t seen = 0;
    for (;;) {
      // Spin (yielding, so oversubscribed cores are not starved), then sleep.
      auto spin_until = std::chrono::steady_clock::now() + kSpinTime;
      while (generation_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < spin_until)
        std::this_thread::yield();
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
      }
      seen = generation_.load(std::memory_order_acquire);
      if (stop_) return;
      // Only under the generation that published it: a worker that read `seen` just before the
      // publication comes back once more, and must not run it twice.
      const FunctionRef<void()>* f = each_.load();
      if (f && each_generation_.load() == seen) {
        (*f)();
        each_left_.fetch_sub(1);
        continue;
      }
      // Join, then check the job is still open (both sequentially consistent, against the
      // caller's close-then-count): either the caller waits for this worker or it stays out.
      joined_.fetch_add(1);
      if (open_.load()) take_tasks();
      joined_.fetch_sub(1);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_, error_mutex_, run_mutex_;
  std::condition_variable wake_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> next_{0}, joined_{0};
  std::atomic<bool> open_{false};
  std::atomic<const FunctionRef<void()>*> each_{nullptr};
  std::atomic<int> each_left_{0};
  std::atomic<std::uint64_t> each_generation_{0};
  const FunctionRef<void(int)>* task_ = nullptr;
  int tasks_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;
};

std::mutex pool_mutex;
std::unique_ptr<ThreadPool> pool;
std::atomic<int> pool_threads{1};

}  // namespace

void set_compute_threads(int threads) {
  threads = std::max(1, threads);
  set_blas_threads(1);
  std::lock_guard<std::mutex> lock(pool_mutex);
  if (threads == pool_threads.load()) return;
  pool_threads.store(1);
  pool.reset();
  if (threads > 1) pool = std::make_unique<ThreadPool>(threads);
  pool_threads.store(threads);
}

int parallel_threads() { return in_task ? 1 : pool_threads.load(std::memory_order_relaxed); }

void parallel_for(int tasks, FunctionRef<void(int)> task) {
  if (tasks <= 0) return;
  if (tasks > 1 && parallel_threads() > 1 && pool->try_run(tasks, task)) return;
  for (int i = 0; i < tasks; ++i) task(i);
}

void on_every_thread(FunctionRef<void()> f) {
  if (!in_task && pool_threads.load() > 1)
    pool->run_on_each(f);
  else
    f();
}

namespace {

// A contiguous range of pieces that its owner takes from the front while threads that have
// finished their own take from the back, so each piece runs once and the owner keeps most of
// its range (and its cache). Front and back in one word, claimed by compare-and-swap; a cache
// line each, so that threads taking from their own ranges do not contend.
class alignas(64) StealableRange {
 public:
  void reset(std::uint32_t pieces) { ends_.store(pieces, std::memory_order_relaxed); }
  bool take_front(std::uint32_t& piece) { return take(piece, true); }
  bool take_back(std::uint32_t& piece) { return take(piece, false); }

 private:
  bool take(std::uint32_t& piece, bool front) {
    std::uint64_t ends = ends_.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint32_t first = static_cast<std::uint32_t>(ends >> 32), end = static_cast<std::uint32_t>(ends);
      if (first >= end) return false;
      piece = front ? first : end - 1;
      const std::uint64_t next =
          front ? (std::uint64_t{first + 1} << 32) | end : (std::uint64_t{first} << 32) | (end - 1);
      if (ends_.compare_exchange_weak(ends, next, std::memory_order_relaxed)) return true;
    }
  }
  // First piece left << 32 | one past the last. Set by reset(): left uninitialised here, so a
  // call does not clear the ranges it does not use.
  std::atomic<std::uint64_t> ends_;
};

// Ranges a call can balance on its own stack; beyond this many threads it splits statically.
constexpr int kMaxStealableRanges = 64;
// Pieces per thread's range: enough that a thread on a slower or busier core (one of this VM's
// vCPUs runs 8-20 % slower; a Pi's core also serves the source and MPI) hands its last pieces
// to the others, few enough that each piece is still a long run.
constexpr std::int64_t kPiecesPerRange = 4;

}  // namespace

void parallel_range(std::int64_t n, std::int64_t grain, FunctionRef<void(std::int64_t, std::int64_t)> body,
                    std::int64_t align, bool whole_ranges) {
  if (n <= 0) return;
  align = std::max<std::int64_t>(1, align);
  grain = std::max<std::int64_t>(1, grain);
  const std::int64_t parts = std::max<std::int64_t>(1, std::min<std::int64_t>(parallel_threads(), n / grain));
  if (parts == 1) {
    body(0, n);
    return;
  }
  std::int64_t chunk = (n + parts - 1) / parts;
  chunk = (chunk + align - 1) / align * align;
  const int tasks = static_cast<int>((n + chunk - 1) / chunk);
  // Each range in pieces of at least `grain` items, starting on multiples of `align`.
  std::int64_t piece = std::max(grain, (chunk + kPiecesPerRange - 1) / kPiecesPerRange);
  piece = std::min(chunk, (piece + align - 1) / align * align);
  const std::int64_t pieces = (chunk + piece - 1) / piece;
  if (whole_ranges || pieces == 1 || tasks > kMaxStealableRanges) {
    parallel_for(tasks, [&](int i) { body(i * chunk, std::min(n, (i + 1) * chunk)); });
    return;
  }
  StealableRange ranges[kMaxStealableRanges];
  for (int i = 0; i < tasks; ++i) {
    const std::int64_t length = std::min(n, (i + 1) * chunk) - i * chunk;
    ranges[i].reset(static_cast<std::uint32_t>((length + piece - 1) / piece));
  }
  const auto run_piece = [&](int range, std::uint32_t k) {
    const std::int64_t begin = range * chunk + k * piece;
    body(begin, std::min({n, begin + piece, (range + 1) * chunk}));
  };
  // Task i is range i's owner: its own pieces from the front, then the others' from the back.
  parallel_for(tasks, [&](int i) {
    std::uint32_t k;
    while (ranges[i].take_front(k)) run_piece(i, k);
    for (int j = (i + 1) % tasks; j != i; j = (j + 1) % tasks)
      while (ranges[j].take_back(k)) run_piece(j, k);
  });
}

}  // namespace chorus
