#pragma once
// What a stage worker needs from outside while it runs, as interfaces: PeerExchange moves data
// between the members of a split stage (the runtime implements it over MPI, tests over
// threads), LayerPacer stretches compute to an emulated device's speed. This module stays free
// of MPI.
#include <cstddef>
#include <vector>

#include "model/executor.h"

namespace chorus::partition {

class PeerExchange {
 public:
  virtual ~PeerExchange() = default;
  // Every member contributes `mine` (counts[member] floats); afterwards `gathered` holds every
  // member's part in member order (counts[0] floats of member 0, then member 1's...), the
  // caller's own included. All members call it in the same order.
  virtual void all_gather(const float* mine, const std::vector<std::size_t>& counts, float* gathered) = 0;
  // The same, but only member `root` receives the parts (the others only send theirs); by
  // default an all-gather.
  virtual void gather(const float* mine, const std::vector<std::size_t>& counts, float* gathered, int root) {
    (void)root;
    all_gather(mine, counts, gathered);
  }
  // An all-gather whose parts the caller takes one member at a time as they arrive:
  // start_gather sends `mine` and posts the receives, wait_part(member) returns once that
  // member's part is in `gathered`, end_gather waits for this member's sends (`mine` and
  // `gathered` stay untouched in between, but for the parts waited for). By default
  // start_gather gathers at once.
  virtual void start_gather(const float* mine, const std::vector<std::size_t>& counts, float* gathered) {
    all_gather(mine, counts, gathered);
  }
  virtual void wait_part(int member) { (void)member; }
  virtual void end_gather() {}
  // Point to point: each of `sends` goes to its member, each of `receives` is filled from its
  // member. Every member calls it at the same point of the stage (between two groups of a
  // split-spatial stage's bands), so that what one member sends to another, that one receives.
  struct Part {
    int member = 0;
    float* data = nullptr;
    std::size_t count = 0;  // floats
  };
  virtual void swap_parts(const std::vector<Part>& sends, const std::vector<Part>& receives) = 0;
  // The same in two halves, so that a member computes what needs none of the parts in between:
  // start_swap sends and posts the receives, finish_swap waits for them (the parts' buffers stay
  // untouched in between). By default start_swap swaps at once and finish_swap does nothing.
  virtual void start_swap(const std::vector<Part>& sends, const std::vector<Part>& receives) {
    swap_parts(sends, receives);
  }
  virtual void finish_swap() {}
  // Partial sums reduced part by part, each part's reduction overlapping the compute of the
  // parts after it. begin_sums(data, count, members, root) comes first and returns the
  // reduction's id; sums_ready(id, begin, end) says that floats [begin, end) of this member's
  // partial sums are written (parts in order, together [0, count)); wait_sums(id, end) returns
  // once floats [0, end) hold the sums over the members here; after end_sums(id) every member's
  // `data` holds the sums (root plan::kSumsToEveryMember), the same bits everywhere, or only
  // member `root`'s does (a
  // reduce: the stage's last layer, whose output only the member that hands it on needs). Two
  // reductions may be open at once: a layer's, and that of a layer computed part by part behind
  // it (plan::part_runs), begun before the first ends; the older one ends first. All members
  // call them at the same points of the stage. The runtime reduces each part directly
  // (plan::sum_share_begin): member c adds up share c of the part from every member, in member
  // order, and sends the sum to the others (to the root); this default gathers every member's
  // whole data at the first wait or end and adds it in member order. A reduce-scatter
  // (root plan::kSumsScattered, cut by `shares`) leaves each member only its own share's sums:
  // the rest of `data` is undefined (this default sums it all).
  virtual int begin_sums(float* data, std::size_t count, int members, int root,
                         const std::vector<std::size_t>* shares = nullptr);
  virtual void sums_ready(int id, std::size_t begin, std::size_t end) { (void)id, (void)begin, (void)end; }
  virtual void wait_sums(int id, std::size_t end);
  virtual void end_sums(int id);

 protected:
  struct OpenSums {
    float* data = nullptr;
    std::size_t count = 0;
    int members = 0, root = -1;
    bool open = false, summed = false;
    const std::vector<std::size_t>* shares = nullptr;  // a reduce-scatter's (the caller's, kept open)
  };
  static constexpr int kOpenSums = 2;
  // Reduction `id`'s record (ids cycle through kOpenSums records).
  OpenSums& open_sums(int id) { return open_sums_[id % kOpenSums]; }
  const OpenSums& open_sums(int id) const { return open_sums_[id % kOpenSums]; }

 private:
  OpenSums open_sums_[kOpenSums];
  int next_sums_ = 0;
};

// Called after each layer a worker runs, so an emulator can stretch compute to a slower
// device's speed. `share` is the part of the layer's work done (1 for a whole layer; the
// slice's fraction for split layers); `started` is steady-clock seconds at its start.
class LayerPacer {
 public:
  virtual ~LayerPacer() = default;
  virtual void layer_done(int node, double share, double started) = 0;
  // Part way through a layer: `fraction` of its work is done (a layer computed in parts, whose
  // finished parts are sent as they come).
  virtual void layer_progress(int node, double share, double started, double fraction) {
    (void)node, (void)share, (void)started, (void)fraction;
  }
};

// Steady-clock seconds, the clock LayerPacer uses.
using model::steady_seconds;

}  // namespace chorus::partition
