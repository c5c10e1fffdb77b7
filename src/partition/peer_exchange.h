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
  // parts after it. begin_sums(data, count, members, root) comes first; sums_ready(begin, end)
  // says that floats [begin, end) of this member's partial sums are written (parts in order,
  // together [0, count)); after end_sums() every member's `data` holds the sums over the members
  // (root < 0), the same bits everywhere, or only member `root`'s does (a reduce: the stage's
  // last layer, whose output only the member that hands it on needs). All members call them at
  // the same point of the stage. The runtime reduces each part directly (plan::sum_share_begin):
  // member c adds up share c of the part from every member, in member order, and sends the sum
  // to the others (to the root); this default gathers every member's whole data at the end and
  // adds it in member order.
  virtual void begin_sums(float* data, std::size_t count, int members, int root);
  virtual void sums_ready(std::size_t begin, std::size_t end) { (void)begin, (void)end; }
  virtual void end_sums();

 protected:
  float* sum_data_ = nullptr;
  std::size_t sum_count_ = 0;
  int sum_members_ = 0;
  int sum_root_ = -1;
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
