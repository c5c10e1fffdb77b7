#include "runtime/pipeline.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/function_ref.h"
#include "core/memory.h"
#include "core/process_counters.h"
#include "partition/hand_off.h"
#include "partition/layer_parts.h"
#include "partition/live_values.h"
#include "partition/row_bands.h"
#include "plan/replica_turns.h"
#include "runtime/failure_notice.h"

namespace chorus::runtime {

using plan::StageMode;

namespace {

// After each layer that the sink's rank computes, `serve` hands on the results that have
// arrived from other ranks: a replica's frame takes a second on a Pi, and its results would
// otherwise wait for it. Emulation's pacer, when there is one, paces the layer first. It looks
// at most once a millisecond, so that a small model's short layers do not pay for it.
class ServeSinkBetweenLayers : public partition::LayerPacer {
 public:
  ServeSinkBetweenLayers(partition::LayerPacer* pacer, FunctionRef<void()> serve) : pacer_(pacer), serve_(serve) {}
  void layer_done(int node, double share, double started) override {
    if (pacer_) pacer_->layer_done(node, share, started);
    const double now = partition::steady_seconds();
    if (now - last_ < kEvery_s) return;
    last_ = now;
    serve_();
  }
  void layer_progress(int node, double share, double started, double fraction) override {
    if (pacer_) pacer_->layer_progress(node, share, started, fraction);
  }

 private:
  static constexpr double kEvery_s = 1e-3;
  partition::LayerPacer* pacer_;
  FunctionRef<void()> serve_;
  double last_ = 0;
};

constexpr int kDataTag = 1;           // + receiving stage (the sink is stage S)
constexpr int kExchangeTag = 10000;   // + stage
constexpr int kSumTag = 20000;        // + stage: the sums of partial sums' shares
constexpr int kCreditTag = 30000;

enum class Kind : std::int32_t { data = 0, end = 1 };

struct Header {
  std::int64_t seq;
  Kind kind;
  std::int32_t frames;
  double produced_at = 0;  // sender's clock when the values were ready (the sink's finish time)
  FrameOrigin origin;      // the input frame, passed on from stage to stage to the sink
};

double now_seconds(const Transport& t) { return t.time(); }

// Swaps inside split stages over point-to-point messages: all-gathers, and gathers to the member
// that hands a split-spatial stage's output on. Its requests and the text it shows while it
// waits are kept from call to call.
class TransportPeerExchange : public partition::PeerExchange {
 public:
  TransportPeerExchange(Transport& t, std::vector<int> ranks, int member, int tag, int sum_tag,
                        report::RankStats& stats, double timeout_s)
      : t_(t), ranks_(std::move(ranks)), member_(member), tag_(tag), sum_tag_(sum_tag), stats_(stats),
        timeout_s_(timeout_s) {
    requests_.reserve(2 * ranks_.size());
    gather_receive_.reserve(ranks_.size());
    sum_parts_.reserve(kOpenSums * kMaxSumParts);
    sum_receives_.reserve(kOpenSums * kMaxSumParts * ranks_.size());
    sum_sends_.reserve(kOpenSums * kMaxSumParts * ranks_.size());
    sum_rest_receives_.reserve(kOpenSums * kMaxSumParts * ranks_.size());
    sum_rest_sends_.reserve(kOpenSums * kMaxSumParts * ranks_.size());
    set_label("a split stage", {});
  }

  void set_label(std::string label, const std::vector<std::string>& hosts) {
    label_ = std::move(label);
    members_.clear();
    for (int r : ranks_)
      if (r != ranks_[member_])
        members_ += cat(members_.empty() ? "" : ", ", r, r < static_cast<int>(hosts.size()) ? " on " + hosts[r] : "");
    waiting_ = cat("the other members of ", label_, " (rank ", members_, ") to swap parts");
  }

  void all_gather(const float* mine, const std::vector<std::size_t>& counts, float* gathered) override {
    swap(mine, counts, gathered, -1);
  }
  void gather(const float* mine, const std::vector<std::size_t>& counts, float* gathered, int root) override {
    swap(mine, counts, gathered, root);
  }

  void swap_parts(const std::vector<Part>& sends, const std::vector<Part>& receives) override {
    start_swap(sends, receives);
    finish_swap();
  }

  // The progress thread moves the parts while the member computes from those already in.
  void start_gather(const float* mine, const std::vector<std::size_t>& counts, float* gathered) override {
    const double t0 = t_.time();
    post_parts(mine, counts, gathered, -1);
    stats_.exchange_s += t_.time() - t0;
  }
  void wait_part(int member) override {
    const int at = gather_receive_.at(member);
    if (at < 0) return;
    const double t0 = t_.time();
    wait_for(requests_, "send their slices", at, at + 1);
    stats_.exchange_s += t_.time() - t0;
  }
  void end_gather() override {
    const double t0 = t_.time();
    wait_all("send their slices");
    stats_.exchange_s += t_.time() - t0;
  }

  // The rows sent and the receives posted; the member computes until finish_swap, and the
  // progress thread moves the messages meanwhile.
  void start_swap(const std::vector<Part>& sends, const std::vector<Part>& receives) override {
    const double t0 = t_.time();
    requests_.clear();
    for (const Part& r : receives) {
      const int from = ranks_.at(r.member);
      requests_.push_back(t_.irecv(from, tag_, r.data, r.count * sizeof(float)));
      stats_.bytes_received += r.count * sizeof(float);
      stats_.bytes_received_from[from] += r.count * sizeof(float);
    }
    for (const Part& p : sends) {
      const int to = ranks_.at(p.member);
      requests_.push_back(t_.isend(to, tag_, p.data, p.count * sizeof(float)));
      stats_.bytes_sent += p.count * sizeof(float);
      stats_.bytes_sent_to[to] += p.count * sizeof(float);
    }
    stats_.exchange_s += t_.time() - t0;
  }

  void finish_swap() override {
    const double t0 = t_.time();
    wait_all("swap the rows their bands share");
    stats_.exchange_s += t_.time() - t0;
  }

  // Partial sums, part by part: as a part is written, each member sends every other member c
  // its contribution to share c of the part (sum_share_begin) and takes theirs to its own share;
  // once they are in (and its own sends out, as the sums land where they were sent from), it
  // adds its share up in member order and sends the sum to the others (to the root only, for a
  // reduce; to none, for a reduce-scatter). Later parts compute meanwhile; wait_sums and
  // end_sums wait for what they need. Each share is summed once, so every member that receives
  // the sums ends with the same bits. Parts are summed in the order they were written, across
  // the (at most two) open reductions, so that every member sends and posts the sums' messages,
  // which share a tag, in one order.
  int begin_sums(float* data, std::size_t count, int members, int root,
                 const std::vector<std::size_t>* shares) override {
    CHORUS_ASSERT(members == static_cast<int>(ranks_.size()), "sums among ", members, " of ", ranks_.size());
    CHORUS_ASSERT(!shares || (shares->size() == ranks_.size() + 1 && count % shares->back() == 0),
                  "a reduce-scatter's shares do not cut its ", count, " floats into frames");
    bool others_open = false;
    for (int r = 0; r < kOpenSums; ++r) others_open = others_open || open_sums(r).open;
    const int id = PeerExchange::begin_sums(data, count, members, root, shares);  // the record
    if (!others_open) {  // every earlier part is summed and its messages done
      sum_parts_.clear();
      sum_receives_.clear();
      sum_sends_.clear();
      sum_rest_receives_.clear();
      sum_rest_sends_.clear();
      sum_summed_ = sum_issued_ = 0;
    }
    // The others' contributions to this member's shares: at most count / k + 1 floats of each
    // part from each of them, or its scattered share of each frame (kept from frame to frame;
    // this record's buffer is idle now).
    Incoming& in = sum_incoming_[id % kOpenSums];
    const std::size_t mine = shares ? count / shares->back() * ((*shares)[member_ + 1] - (*shares)[member_])
                                    : count / members + kMaxSumParts;
    const std::size_t need = (members - 1) * mine;
    if (in.floats.size() < need) in.floats.resize(need);
    in.used = 0;
    return id;
  }

  void sums_ready(int id, std::size_t begin, std::size_t end) override {
    const OpenSums& sums = open_sums(id);
    const int k = sums.members;
    if (k < 2) return;
    const double t0 = t_.time();  // the time spent here and in wait/end_sums is exchange, the rest compute
    CHORUS_ASSERT(sum_parts_.size() < kOpenSums * kMaxSumParts, "more than ", kMaxSumParts, " parts of partial sums");
    Incoming& in = sum_incoming_[id % kOpenSums];
    SumPart part{id, begin, end, in.floats.data() + in.used, sum_receives_.size(), 0, 0, 0, 0, 0};
    const std::size_t mine = share_end(part, member_) - share_begin(part, member_);
    for (int c = 0; c < k; ++c) {
      if (c == member_) continue;
      CHORUS_ASSERT(in.used + mine <= in.floats.size(), "partial sums' buffer too small");
      sum_receives_.push_back(t_.irecv(ranks_[c], tag_, in.floats.data() + in.used, mine * sizeof(float)));
      in.used += mine;
    }
    sum_parts_.push_back(part);
    sum_parts_in_order(sum_parts_.size(), false);
    stats_.exchange_s += t_.time() - t0;
  }

  void wait_sums(int id, std::size_t end) override {
    if (open_sums(id).members < 2) return;
    const double t0 = t_.time();
    std::size_t through = 0;  // the parts of `id` that end by `end`, and every part before them
    for (std::size_t p = 0; p < sum_parts_.size(); ++p)
      if (sum_parts_[p].id == id && sum_parts_[p].end <= end) through = p + 1;
    sum_parts_in_order(through, true);
    for (std::size_t p = 0; p < through; ++p)
      if (sum_parts_[p].id == id)
        wait_for(sum_rest_receives_, "pass on their partial sums", sum_parts_[p].first_rest_receive,
                 sum_parts_[p].first_rest_receive + sum_parts_[p].rest_receives);
    stats_.exchange_s += t_.time() - t0;
  }

  void end_sums(int id) override {
    OpenSums& sums = open_sums(id);
    if (sums.members >= 2) {
      wait_sums(id, sums.count);
      const double t0 = t_.time();
      for (const SumPart& part : sum_parts_)
        if (part.id == id)
          wait_for(sum_rest_sends_, "pass on their partial sums", part.first_rest_send,
                   part.first_rest_send + part.rest_sends);
      stats_.exchange_s += t_.time() - t0;
    }
    sums.open = false;
  }

 private:
  static constexpr std::size_t kMaxSumParts = 64;
  struct SumPart {
    int id;  // the reduction
    std::size_t begin, end;
    float* incoming;             // where the others' contributions land
    std::size_t first_receive;   // its k - 1 receives in sum_receives_, sends in sum_sends_
    std::size_t first_send;      // (once sent: send_contributions)
    // The sums' messages, once summed: receives of the others' shares, sends of its own.
    std::size_t first_rest_receive, rest_receives, first_rest_send, rest_sends;
  };
  struct Incoming {
    std::vector<float> floats;
    std::size_t used = 0;
  };
  std::size_t share_begin(const SumPart& p, int c) const {
    return plan::sum_share_begin(p.begin, p.end, static_cast<int>(ranks_.size()), c, open_sums(p.id).shares);
  }
  std::size_t share_end(const SumPart& p, int c) const { return share_begin(p, c + 1); }
  void count_bytes(int rank, std::size_t sent, std::size_t received) {
    stats_.bytes_sent += sent * sizeof(float);
    stats_.bytes_sent_to[rank] += sent * sizeof(float);
    stats_.bytes_received += received * sizeof(float);
    stats_.bytes_received_from[rank] += received * sizeof(float);
  }
  // Whether every request of [first, first + k - 1) ended (waiting for them when `wait`).
  bool ended(std::vector<Transport::Request>& requests, std::size_t first, bool wait) {
    const std::size_t end = first + ranks_.size() - 1;
    if (wait) {
      wait_for(requests, "pass on their partial sums", first, end);
      return true;
    }
    for (std::size_t i = first; i < end; ++i) {
      if (requests[i] >= 0 && !t_.test(requests[i])) return false;
      requests[i] = -1;
    }
    return true;
  }
  // Sends this member's contributions to the others' shares of the parts written so far, but at
  // most one part ahead of the sums it has sent: a part's sums then leave right after its
  // contributions instead of queueing behind every later part's, so the layers computed part
  // by part behind the reduction (plan::part_runs) get each part as early as the links allow.
  // Each part's receives were posted when it was written.
  void send_contributions() {
    for (; sum_issued_ < sum_parts_.size() && sum_issued_ <= sum_summed_ + 1; ++sum_issued_) {
      SumPart& part = sum_parts_[sum_issued_];
      const OpenSums& sums = open_sums(part.id);
      const std::size_t mine = share_end(part, member_) - share_begin(part, member_);
      part.first_send = sum_sends_.size();
      for (int c = 0; c < static_cast<int>(ranks_.size()); ++c) {
        if (c == member_) continue;
        const std::size_t theirs = share_end(part, c) - share_begin(part, c);
        sum_sends_.push_back(t_.isend(ranks_[c], tag_, sums.data + share_begin(part, c), theirs * sizeof(float)));
        count_bytes(ranks_[c], theirs, mine);
      }
    }
  }

  // Sums the parts whose contributions are in, in order, and sends the sums on: all of the first
  // `through` parts when `wait`, else as many as have arrived.
  void sum_parts_in_order(std::size_t through, bool wait) {
    const int k = static_cast<int>(ranks_.size());
    send_contributions();
    for (; sum_summed_ < sum_parts_.size(); ++sum_summed_, send_contributions()) {
      const bool must = wait && sum_summed_ < through;
      SumPart& part = sum_parts_[sum_summed_];
      if (!ended(sum_receives_, part.first_receive, must) || !ended(sum_sends_, part.first_send, must)) return;
      const OpenSums& sums = open_sums(part.id);
      const std::size_t b = share_begin(part, member_), n = share_end(part, member_) - b;
      float* own = sums.data + b;
      // In member order: member 0's contribution, plus member 1's, ... (accumulated in member
      // 0's, which is this member's own or a received copy).
      const auto contribution = [&](int c) -> float* {
        return c == member_ ? own : part.incoming + (c < member_ ? c : c - 1) * n;
      };
      float* total = contribution(0);
      for (int c = 1; c < k; ++c) {
        const float* x = contribution(c);
        for (std::size_t i = 0; i < n; ++i) total[i] += x[i];
      }
      if (total != own) std::copy(total, total + n, own);
      part.first_rest_receive = sum_rest_receives_.size();
      part.first_rest_send = sum_rest_sends_.size();
      for (int c = 0; c < k; ++c) {
        if (c == member_) continue;
        const int rank = ranks_[c];
        const std::size_t at = share_begin(part, c), m = share_end(part, c) - at;
        const bool every = sums.root == plan::kSumsToEveryMember;  // none travel in a reduce-scatter
        const bool receive = every || sums.root == member_, send = every || sums.root == c;
        if (receive) sum_rest_receives_.push_back(t_.irecv(rank, sum_tag_, sums.data + at, m * sizeof(float)));
        if (send) sum_rest_sends_.push_back(t_.isend(rank, sum_tag_, own, n * sizeof(float)));
        count_bytes(rank, send ? n : 0, receive ? m : 0);
      }
      part.rest_receives = sum_rest_receives_.size() - part.first_rest_receive;
      part.rest_sends = sum_rest_sends_.size() - part.first_rest_send;
    }
  }

  // Every member's part to every other member (root < 0), or to member `root` only.
  void swap(const float* mine, const std::vector<std::size_t>& counts, float* gathered, int root) {
    const double t0 = t_.time();
    post_parts(mine, counts, gathered, root);
    wait_all("swap their parts");
    stats_.exchange_s += t_.time() - t0;
  }
  // Copies this member's part into `gathered`, posts the receives of the others' (in member
  // order: gather_receive_[m] is member m's request, -1 for its own or none) and sends its part.
  void post_parts(const float* mine, const std::vector<std::size_t>& counts, float* gathered, int root) {
    requests_.clear();
    gather_receive_.assign(ranks_.size(), -1);
    float* part = gathered;
    float* own = nullptr;
    const bool receiving = root < 0 || root == member_;
    for (std::size_t m = 0; m < ranks_.size(); ++m) {
      if (static_cast<int>(m) == member_) {
        own = part;
      } else if (receiving) {
        gather_receive_[m] = static_cast<int>(requests_.size());
        requests_.push_back(t_.irecv(ranks_[m], tag_, part, counts[m] * sizeof(float)));
        stats_.bytes_received += counts[m] * sizeof(float);
        stats_.bytes_received_from[ranks_[m]] += counts[m] * sizeof(float);
      }
      part += counts[m];
    }
    for (std::size_t m = 0; m < ranks_.size(); ++m) {
      if (static_cast<int>(m) == member_ || (root >= 0 && static_cast<int>(m) != root)) continue;
      requests_.push_back(t_.isend(ranks_[m], tag_, mine, counts[member_] * sizeof(float)));
      stats_.bytes_sent += counts[member_] * sizeof(float);
      stats_.bytes_sent_to[ranks_[m]] += counts[member_] * sizeof(float);
    }
    std::copy(mine, mine + counts[member_], own);
  }

  // Waits for every request, naming the members (and what they did not do) if one stalls.
  void wait_all(const char* what) { wait_for(requests_, what); }
  // Waits for every request still open (>= 0) of `requests`, naming the members if one stalls.
  void wait_for(std::vector<Transport::Request>& requests, const char* what, std::size_t first = 0,
                std::size_t end = std::numeric_limits<std::size_t>::max()) {
    note_waiting(waiting_.c_str());
    try {
      for (std::size_t i = first; i < std::min(end, requests.size()); ++i)
        if (requests[i] >= 0) t_.wait(requests[i], timeout_s_), requests[i] = -1;
    } catch (const Error&) {
      note_not_waiting();
      fail("the other members of ", label_, " (rank ", members_, ") did not ", what, " within ", timeout_s_,
           " s (one of them stalled or died; --stall-timeout sets the limit)");
    }
    note_not_waiting();
  }

  Transport& t_;
  std::vector<int> ranks_;
  int member_, tag_, sum_tag_;
  report::RankStats& stats_;
  double timeout_s_;
  std::string label_, members_, waiting_;
  std::vector<Transport::Request> requests_;
  std::vector<int> gather_receive_;  // start_gather: each member's receive in requests_ (-1: its own)
  // Partial sums under way (begin_sums .. end_sums), their buffers kept from frame to frame.
  std::vector<SumPart> sum_parts_;
  std::vector<Transport::Request> sum_receives_, sum_sends_, sum_rest_receives_, sum_rest_sends_;
  Incoming sum_incoming_[kOpenSums];  // one per open reduction
  std::size_t sum_summed_ = 0;        // parts whose sums are sent (in sum_parts_ order)
  std::size_t sum_issued_ = 0;        // parts whose contributions are sent
};

// Counters at the points that split a rank's run into its first frame, a warm-up and the
// steady state (see Pipeline::run).
struct FrameCounters {
  ProcessCounters start, first, warm, last;
  int warm_tasks = -1, last_tasks = 0;  // primary-role tasks done when `warm` and `last` were read
};

}  // namespace

struct Pipeline::Impl {
  Transport& t;
  const model::Model& model;
  const plan::ResolvedPlan& plan;
  const int S;    // stages; role index -1 is the source, S the sink
  const int me;
  double stall_timeout_s = 0;
  partition::LayerPacer* pacer = nullptr;
  std::map<int, std::unique_ptr<partition::StageWorker>> workers;  // by stage
  std::map<int, std::unique_ptr<TransportPeerExchange>> exchanges;
  std::vector<plan::ReplicaTurns> replica_turns;  // per stage: the member of frame i (replicate only)
  std::vector<std::vector<int>> live;            // live[s]: values entering role s (s = S: the sink)
  // rows[s][member][k]: the rows of live[s][k] that member takes (partition::stage_input_rows:
  // all of them but in split-spatial stages, whose members take their bands' rows, and in
  // split-input stages that read slices of a vector, whose members take their slices).
  std::vector<std::vector<std::vector<partition::InputRows>>> rows;
  std::vector<char> rows_differ_;                // [s]: whether role s's receivers take different rows
  std::vector<std::string> role_labels;          // [s + 1]: "stage 1 (fc1..fc1)", "the source", "the sink"
  std::vector<std::vector<int>> all_ranks_of;    // [s]: the ranks receiving role s's input (s = S: the sink)
  report::RankStats stats;

  // Every buffer of the steady state, kept from frame to frame: a receive buffer per role, the
  // sink's output, the source's frame, mailboxes for hand-offs between roles of this rank and
  // pools of send buffers, each per role, since each role's messages have one size.
  struct PendingReceive {
    int frame = -1, sender = -1;
    Transport::Request request = -1;
    bool posted = false;
    std::vector<char> buffer;
  };
  std::vector<PendingReceive> pending;  // [s]
  struct Mail {
    int frame = -1;  // -1: free
    double ready_at = 0;
    FrameOrigin origin;
    std::vector<Tensor> values;
  };
  std::vector<std::vector<Mail>> mailbox;  // [s]: values for role s from this rank
  // End of stream, as flags sized at set-up (the source's end arrives while later roles still
  // run frames of the steady state).
  std::vector<char> local_end;               // [s]: role s told "end" locally
  std::vector<std::vector<char>> ends_seen;  // [s][rank]: that sender's end arrived
  std::vector<char> ended;                   // [s + 1]: role s finished
  int roles_ended = 0;
  struct OutgoingSend {
    bool busy = false;
    int frame = -1;
    // The messages: one for every receiver, or one per receiver where they differ (the members
    // of a split-spatial stage take their own rows); `used` of them hold this frame's.
    std::vector<std::vector<char>> buffers;
    std::size_t used = 0;
    std::vector<Transport::Request> requests;
    std::vector<int> to;  // the rank of each request
  };
  std::vector<std::vector<OutgoingSend>> outgoing;  // [s + 1]: messages into role s; [0] credits and ends
  // Buffers a pool may hold ([s + 1]; 0: no bound). A producer whose pool is full waits for its
  // oldest send to be taken instead of allocating another: that send's frame is at an earlier
  // tick, which its receiver reaches without waiting for this rank, so no cycle of waits forms.
  std::vector<int> send_capacity;
  std::vector<std::string> hosts;  // by rank, for messages

  // Coded redundancy (plan::Stage::parity): the consumers of a parity stage take each member's
  // slice (the last member's is the parity) and, once all but one are in, wait no longer than
  // parity_wait_s for the last, rebuilding a missing slice from the parity and the others. A
  // member that fell behind is not waited for at all until it has caught up. Its late slices
  // still arrive (each member's messages land in the receives posted for it, in frame order)
  // and are dropped.
  struct CodedSlot {
    int frame = -1;  // -1: free
    Transport::Request request = -1;
    bool arrived = false;
    std::vector<char> buffer;
  };
  struct CodedMember {
    int rank = 0;
    std::size_t bytes = 0;            // header + slice
    int width = 0, channel_begin = 0;  // its slice's channels of the output
    std::vector<CodedSlot> slots;     // posted in frame order
    bool ended = false;
  };
  std::vector<std::vector<CodedMember>> coded_in;  // [s]: role s's input from parity stage s - 1
  double parity_wait_s = 0.1;
  std::vector<layers::Activation> coded_activation;  // [s]: the split layer's, applied after joining
  std::vector<int> coded_received;  // [member]: the slot of the frame being joined (scratch)
  std::vector<char> slow_ranks;     // [rank]: reap_sends' scratch (messages not yet taken)
  // A stage whose slices go straight to their consumers.
  bool coded(int s) const { return s >= 0 && s < S && stage(s).parity; }
  // Floats of member g's slice of parity stage s, per frame (the parity: the widest slice's).
  std::pair<int, int> coded_channels(int s, int g) const {
    const auto& st = stage(s);
    const auto bounds = plan::split_bounds(model.node(st.last).layer->output_shape().c, st.fractions);
    if (g < st.data_members()) return {bounds[g], bounds[g + 1] - bounds[g]};
    return {0, plan::widest_part(bounds)};
  }
  std::size_t coded_message_bytes(int s, int g) const {
    const Shape out = model.node(stage(s).last).layer->output_shape();
    return sizeof(Header) + static_cast<std::size_t>(coded_channels(s, g).second) * (out.size() / out.c) * sizeof(float);
  }

  // Tiles handed straight on (plan::hands_tiles_on): each member of such a stage sends
  // each receiver of the role after it the pieces of its tile that receiver takes, and the
  // receiver puts every member's pieces in place (none travel where a member's tile holds
  // nothing of what it takes). No member gathers the stage's output first.
  std::vector<std::unique_ptr<partition::TileHandOff>> hand_offs;  // [s]: stage s's, or null
  struct TileSender {
    int rank = 0, member = 0;
    std::size_t bytes = 0;  // header + pieces
    std::vector<CodedSlot> slots;
  };
  std::vector<std::vector<TileSender>> tiles_in;  // [s]: role s's senders (members of stage s - 1)
  bool hands_on(int s) const { return s >= 0 && s < S && hand_offs[s] != nullptr; }
  // Bytes of the largest message this rank sends into role s as a member of stage s - 1.
  std::size_t largest_tile_message(int s) const {
    std::size_t largest = sizeof(Header);
    const int g = member_index(s - 1, me);
    const int receivers = s == S ? 1 : static_cast<int>(stage(s).ranks.size());
    for (int r = 0; r < receivers; ++r)
      largest = std::max(largest, sizeof(Header) + hand_offs[s - 1]->floats(g, r) * sizeof(float));
    return largest;
  }

  int credits_received = 0;
  // A credit from the sink arrived: one more frame has left the system.
  void count_credit() {
    ++credits_received;
    stats.bytes_received += sizeof(Header);
    stats.bytes_received_from[plan.plan.sink] += sizeof(Header);
  }
  double produced_at = 0;  // of the values received last: when their producer had them ready
  // [s + 1]: the input frame role s works on now (s = -1: the source's), for its sends.
  std::vector<FrameOrigin> origin;
  // Rank 0's clock minus this rank's (clock_offsets.h): frame start and finish times, and the
  // times carried in headers, are on rank 0's clock, so a latency between hosts is one clock's.
  double clock_offset = 0;
  double reference_now() const { return t.time() + clock_offset; }
  std::vector<char> credit_buffer = std::vector<char>(sizeof(Header));
  std::vector<float> source_frame;         // a model of several inputs: every input's frame, back to back
  std::vector<Tensor> source_inputs;       // the same, one tensor per model input
  std::vector<const Tensor*> source_values;
  std::vector<Tensor> sink_values;
  std::vector<std::vector<const Tensor*>> worker_outputs;  // [s]: a worker's outputs, to send
  char waiting[512] = {0};                                 // what this rank waits for, for messages

  Impl(Transport& transport, const model::Model& m, const plan::ResolvedPlan& p)
      : t(transport), model(m), plan(p), S(static_cast<int>(p.stages.size())), me(transport.rank()) {
    for (int s = 0; s < S; ++s) replica_turns.emplace_back(p.stages[s].fractions);
    for (int s = -1; s < S; ++s) live.push_back(partition::live_values(m, p, s));
    rows.resize(S + 1);
    for (int s = 0; s < S; ++s)
      for (std::size_t member = 0; member < p.stages[s].ranks.size(); ++member)
        rows[s].push_back(partition::stage_input_rows(m, p, s, static_cast<int>(member)));
    rows[S].push_back(partition::stage_input_rows(m, p, S, 0));
    for (int s = 0; s <= S; ++s)
      rows_differ_.push_back(
          std::any_of(rows[s].begin(), rows[s].end(), [&](const auto& r) { return !(r == rows[s][0]); }));
    role_labels.push_back("the source");
    for (int s = 0; s < S; ++s)
      role_labels.push_back(
          cat("stage ", s, " (", model.node(stage(s).first).name(), "..", model.node(stage(s).last).name(), ")"));
    role_labels.push_back("the sink");
    for (int s = 0; s < S; ++s) all_ranks_of.push_back(stage(s).ranks);
    all_ranks_of.push_back({plan.plan.sink});
    pending.resize(S + 1);
    local_end.assign(S + 1, 0);
    ends_seen.assign(S + 1, std::vector<char>(transport.size(), 0));
    ended.assign(S + 2, 0);
    mailbox.resize(S + 1);
    origin.resize(S + 2);
    outgoing.resize(S + 2);
    worker_outputs.resize(S);
    stats.rank = me;
    stats.host = t.host();
    stats.bytes_sent_to.assign(transport.size(), 0.0);
    stats.bytes_received_from.assign(transport.size(), 0.0);
    coded_in.resize(S + 1);
    coded_activation.resize(S + 1);
    for (int s = 1; s <= S; ++s) {
      if (!coded(s - 1) || !has_role(s)) continue;
      coded_activation[s] = partition::layer_activation(model.node(stage(s - 1).last));
      for (std::size_t g = 0; g < stage(s - 1).ranks.size(); ++g) {
        CodedMember& member = coded_in[s].emplace_back();
        member.rank = stage(s - 1).ranks[g];
        member.bytes = coded_message_bytes(s - 1, static_cast<int>(g));
        std::tie(member.channel_begin, member.width) = coded_channels(s - 1, static_cast<int>(g));
        member.slots.resize(2);  // this frame's and the next's
        for (CodedSlot& slot : member.slots) slot.buffer.resize(member.bytes);
      }
    }
    hand_offs.resize(S);
    tiles_in.resize(S + 1);
    for (int s = 0; s < S; ++s)
      if (plan::hands_tiles_on(m, p.stages[s]))
        hand_offs[s] = std::make_unique<partition::TileHandOff>(partition::tile_hand_off(m, p, s));
    for (int s = 1; s <= S; ++s) {
      if (!hands_on(s - 1) || !has_role(s)) continue;
      for (std::size_t g = 0; g < stage(s - 1).ranks.size(); ++g) {
        const std::size_t floats = hand_offs[s - 1]->floats(static_cast<int>(g), member_of(s, me));
        if (floats == 0) continue;  // nothing of what this rank takes lies in that member's tile
        TileSender& sender = tiles_in[s].emplace_back();
        sender.rank = stage(s - 1).ranks[g];
        sender.member = static_cast<int>(g);
        sender.bytes = sizeof(Header) + floats * sizeof(float);
        sender.slots.resize(2);  // this frame's and the next's
        for (CodedSlot& slot : sender.slots) slot.buffer.resize(sender.bytes);
      }
      CHORUS_ASSERT(!tiles_in[s].empty(), "rank ", me, " takes nothing of the tiles of ", stage_label(s - 1));
    }
  }

  const plan::ResolvedStage& stage(int s) const { return plan.stages[s]; }

  const std::string& host_of(int rank) const {
    static const std::string unknown = "?";
    return rank >= 0 && rank < static_cast<int>(hosts.size()) ? hosts[rank] : unknown;
  }
  // "stage 1 (fc1..fc1)", "the source" for s = -1, "the sink" for s = S.
  const std::string& stage_label(int s) const { return role_labels[std::clamp(s, -1, S) + 1]; }
  // "rank 1 on pi2, stage 1 (fc1..fc1)": the peer that computes stage s for this frame.
  std::string peer(int rank, int s) const { return cat("rank ", rank, " on ", host_of(rank), ", ", stage_label(s)); }
  // Same, into `waiting`, with what it owes, without allocating.
  const char* waiting_for(int rank, int s, const char* what, int frame) {
    std::snprintf(waiting, sizeof waiting, "rank %d on %s, %s, %s %d", rank, host_of(rank).c_str(),
                  stage_label(s).c_str(), what, frame);
    return waiting;
  }

  // Waits for a request from a peer, saying whom for a termination notice and a stall.
  std::size_t wait_for(Transport::Request request, const char* what) {
    note_waiting(what);
    std::size_t got = 0;
    try {
      got = t.wait(request, stall_timeout_s);
    } catch (const Error&) {
      note_not_waiting();
      fail("waited ", stall_timeout_s, " s for ", what, " (that rank stalled or died; --stall-timeout sets the limit)");
    }
    note_not_waiting();
    return got;
  }

  int member_index(int s, int rank) const {
    const auto& r = stage(s).ranks;
    auto it = std::find(r.begin(), r.end(), rank);
    return it == r.end() ? -1 : static_cast<int>(it - r.begin());
  }

  // Smooth weighted round robin: frame i goes to the replica furthest behind its share.
  int replica_of(int s, int i) { return replica_turns[s].member_of(i); }

  // The rank that produces stage s's output for frame i (s = -1: the source).
  int producer(int s, int i) {
    if (s < 0) return plan.plan.source;
    const auto& st = stage(s);
    return st.mode == StageMode::replicate ? st.ranks[replica_of(s, i)] : st.ranks[0];
  }

  // Whether `rank` receives role s's input for frame i (s = S: the sink).
  bool receives(int s, int i, int rank) {
    if (s < S && stage(s).mode == StageMode::replicate) return stage(s).ranks[replica_of(s, i)] == rank;
    const auto& r = all_ranks_of[s];
    return std::find(r.begin(), r.end(), rank) != r.end();
  }

  // Every rank that may send into stage s / that stage s's senders send to (for end-of-stream).
  std::vector<int> all_producers(int s) {
    if (s < 0) return {plan.plan.source};
    const auto& st = stage(s);
    return st.mode == StageMode::replicate || st.parity || hands_on(s) ? st.ranks : std::vector<int>{st.ranks[0]};
  }

  bool has_role(int s) {
    if (s < 0) return me == plan.plan.source;
    if (s == S) return me == plan.plan.sink;
    return member_index(s, me) >= 0;
  }
  bool has_task(int s, int i) {
    if (!has_role(s)) return false;
    if (s >= 0 && s < S && stage(s).mode == StageMode::replicate) return stage(s).ranks[replica_of(s, i)] == me;
    return true;
  }
  int next_task(int s, int i) {
    int j = i + 1;
    while (!has_task(s, j)) ++j;
    return j;
  }

  // The member of role s that `rank` is (0 for the sink and for a rank outside the stage).
  int member_of(int s, int rank) const { return s == S ? 0 : std::max(0, member_index(s, rank)); }
  // A message into role s for `member`: the header and its rows of every value.
  std::size_t message_bytes(int s, int member) const {
    return sizeof(Header) + partition::input_rows_floats(rows[s][member]) * sizeof(float);
  }
  std::size_t largest_message_bytes(int s) const {
    std::size_t largest = 0;
    for (std::size_t g = 0; g < rows[s].size(); ++g) largest = std::max(largest, message_bytes(s, static_cast<int>(g)));
    return largest;
  }
  // Whether role s's receivers take different rows (a split-spatial stage of several members, or
  // a split-input stage's slices).
  bool rows_differ(int s) const { return rows_differ_[s]; }

  // Writes frame i's values, the rows `member` of role s takes, after a header.
  void pack(std::vector<char>& buffer, int s, int member, int i, const std::vector<const Tensor*>& values) {
    buffer.resize(message_bytes(s, member));
    Header h{i, Kind::data, values.empty() ? 1 : values[0]->frames(), reference_now(), origin[s]};
    std::memcpy(buffer.data(), &h, sizeof h);
    char* at = buffer.data() + sizeof h;
    const auto& r = rows[s][member];
    for (std::size_t k = 0; k < values.size(); ++k) {
      const Tensor& v = *values[k];
      for (int f = 0; f < v.frames(); ++f, at += r[k].floats() * sizeof(float))
        partition::pack_input_rows(r[k], v.frame(f), reinterpret_cast<float*>(at));
    }
  }

  // Where role s's input k goes: its worker's input, or the sink's output.
  Tensor& destination(int s, int k) { return s == S ? sink_values[k] : workers.at(s)->input(k); }

  void post_receive(int s, int frame) {
    const int from = producer(s - 1, frame);
    if (from == me) return;
    PendingReceive& p = pending[s];
    p.frame = frame;
    p.sender = from;
    p.buffer.resize(message_bytes(s, member_of(s, me)));
    p.request = t.irecv(from, kDataTag + s, p.buffer.data(), p.buffer.size());
    p.posted = true;
  }

  // Input of role s (a stage, or the sink) for frame i into its destination; false at the end
  // of the stream.
  bool receive(int s, int i) {
    if (coded(s - 1)) return receive_coded(s, i);
    if (hands_on(s - 1)) return receive_tiles(s, i);
    const int from = producer(s - 1, i);
    const double t0 = now_seconds(t);
    if (from == me) {
      for (Mail& mail : mailbox[s]) {
        if (mail.frame != i) continue;
        for (std::size_t k = 0; k < mail.values.size(); ++k) destination(s, static_cast<int>(k)) = mail.values[k];
        produced_at = mail.ready_at;
        origin[s + 1] = mail.origin;
        mail.frame = -1;
        // The next frame may come from another rank (a replica's): post its receive now, as
        // below, so that input_arrived can see it (a sink serving between its layers).
        const int next = next_task(s, i);
        if (!pending[s].posted && producer(s - 1, next) != me) post_receive(s, next);
        return true;
      }
      CHORUS_ASSERT(local_end[s], "rank ", me, ": no local input for stage ", s, " frame ", i);
      ends_seen[s][me] = 1;
      return false;
    }
    PendingReceive& p = pending[s];
    if (!p.posted || p.frame != i) post_receive(s, i);
    p.posted = false;
    const std::size_t got = wait_for(p.request, waiting_for(from, s - 1, "for frame", i));
    stats.wait_s += now_seconds(t) - t0;
    Header h;
    std::memcpy(&h, p.buffer.data(), sizeof h);
    if (h.kind == Kind::end) {
      ends_seen[s][from] = 1;
      return false;
    }
    CHORUS_ASSERT(h.seq == i, "rank ", me, " stage ", s, ": expected frame ", i, ", got ", h.seq);
    produced_at = h.produced_at;
    origin[s + 1] = h.origin;
    stats.bytes_received += got;
    stats.bytes_received_from[from] += got;
    const float* data = reinterpret_cast<const float*>(p.buffer.data() + sizeof(Header));
    const auto& r = rows[s][member_of(s, me)];
    for (std::size_t k = 0; k < live[s].size(); ++k) {
      Tensor& tensor = destination(s, static_cast<int>(k));
      tensor.resize(h.frames, model.shape_of(live[s][k]));
      for (int f = 0; f < h.frames; ++f, data += r[k].floats())  // the part this member takes
        partition::unpack_input_rows(r[k], data, tensor.frame(f));
    }
    // Post the next receive now (into the same buffer, read above), so it lands while this
    // frame computes.
    const int next = next_task(s, i);
    if (producer(s - 1, next) != me) post_receive(s, next);
    return true;
  }

  // Whether role s's input for frame i is here, so that receive(s, i) would return at once with
  // it; false for the coded and handed-on inputs, which are not taken out of turn.
  bool input_arrived(int s, int i) {
    if (coded(s - 1) || hands_on(s - 1)) return false;
    if (producer(s - 1, i) == me) {
      for (const Mail& mail : mailbox[s])
        if (mail.frame == i) return true;
      return false;
    }
    const PendingReceive& p = pending[s];
    return p.posted && p.frame == i && t.ready(p.request);
  }

  // Posts frame i's receive from `rank` into one of `slots` (once): a free one, or one more
  // where every slot is taken (a member behind, or a role of this rank that trails: only then,
  // and kept). A message from this rank itself is put in its slot by its sender.
  void post_slot(std::vector<CodedSlot>& slots, int rank, std::size_t bytes, int tag, int i) {
    CodedSlot* free = nullptr;
    for (CodedSlot& slot : slots) {
      if (slot.frame == i) return;
      if (slot.frame < 0 && !free) free = &slot;
    }
    if (!free) {
      free = &slots.emplace_back();
      free->buffer.resize(std::max(bytes, sizeof(Header)));
    }
    free->frame = i;
    free->arrived = false;
    free->request = rank == me ? -1 : t.irecv(rank, tag, free->buffer.data(), free->buffer.size());
  }

  // Posts frame i's receive from every member of parity stage s - 1 (once); this rank's own
  // slice (it computes one and consumes the stage) is put there by send_slice.
  void post_coded(int s, int i) {
    for (CodedMember& member : coded_in[s]) post_slot(member.slots, member.rank, member.bytes, kDataTag + s, i);
  }

  // Ends the requests of slots that arrived, each member's in frame order up to the first still
  // open (its messages arrive in order); late ones (before frame i) are dropped.
  void poll_coded(int s, int i) {
    for (CodedMember& member : coded_in[s]) {
      if (member.rank == me) continue;  // its own slice is in place already
      for (;;) {
        CodedSlot* oldest = nullptr;
        for (CodedSlot& slot : member.slots)
          if (slot.frame >= 0 && !slot.arrived && (!oldest || slot.frame < oldest->frame)) oldest = &slot;
        if (!oldest || !t.test(oldest->request)) break;
        CodedSlot& slot = *oldest;
        slot.arrived = true;
        slot.request = -1;
        Header h;
        std::memcpy(&h, slot.buffer.data(), sizeof h);
        if (h.kind == Kind::data) {
          stats.bytes_received += member.bytes;
          stats.bytes_received_from[member.rank] += member.bytes;
        }
        if (slot.frame < i) slot.frame = -1;  // a late slice: its frame was rebuilt
      }
    }
  }

  // Role s's input for frame i from the slices of parity stage s - 1; false at the end.
  bool receive_coded(int s, int i) {
    const double t0 = now_seconds(t);
    post_coded(s, i);
    auto& members = coded_in[s];
    const int k = static_cast<int>(members.size()) - 1;
    coded_received.assign(members.size(), -1);
    double all_but_one_at = -1;
    for (int polls = 0;; ++polls) {
      poll_coded(s, i);
      int arrived = 0, waiting_for = -1;
      bool end = false;
      for (std::size_t g = 0; g < members.size(); ++g) {
        CodedSlot* slot = nullptr;
        bool behind = false;  // a slice of an earlier frame still owed
        for (CodedSlot& c : members[g].slots) {
          if (c.frame == i) slot = &c;
          if (c.frame >= 0 && c.frame < i && !c.arrived) behind = true;
        }
        if (members[g].rank == me && local_end[s] && !(slot && slot->arrived)) {
          end = true, members[g].ended = true;  // this rank's own member ended the stream
        } else if (slot && slot->arrived) {
          Header h;
          std::memcpy(&h, slot->buffer.data(), sizeof h);
          if (h.kind == Kind::end) end = true, ends_seen[s][members[g].rank] = 1, members[g].ended = true;
          coded_received[g] = static_cast<int>(slot - members[g].slots.data());
          ++arrived;
        } else if (!behind) {
          waiting_for = static_cast<int>(g);
        }
      }
      if (end) {
        stats.wait_s += now_seconds(t) - t0;
        return false;
      }
      const double now = now_seconds(t);
      if (arrived == k + 1) break;
      if (arrived == k) {
        if (all_but_one_at < 0) all_but_one_at = now;
        // A member still behind on earlier frames is not waited for; one that is on time is,
        // for parity_wait_s.
        if (waiting_for < 0 || now - all_but_one_at >= parity_wait_s) break;
      }
      if (stall_timeout_s > 0 && now - t0 > stall_timeout_s) {
        std::string missing;
        for (std::size_t g = 0; g < members.size(); ++g)
          if (coded_received[g] < 0) missing += cat(missing.empty() ? "" : ", ", peer(members[g].rank, s - 1));
        fail("waited ", stall_timeout_s, " s for frame ", i, " from ", missing,
             ": more members of a parity stage than it can rebuild stalled or died (--stall-timeout sets the limit)");
      }
      // Polled, as any k of the slices will do; from every 50 us to every 1 ms when a wait is long.
      std::this_thread::sleep_for(std::chrono::microseconds(std::min(1000, 50 + 10 * polls)));
    }
    stats.wait_s += now_seconds(t) - t0;
    join_slices(s, i);
    return true;
  }

  // The stage's output from its members' slices (one of the data members' may be missing: it
  // is the parity less the others), then the layer's activation.
  void join_slices(int s, int i) {
    auto& members = coded_in[s];
    const int k = static_cast<int>(members.size()) - 1;
    const auto& st = stage(s - 1);
    const Shape out_shape = model.node(st.last).layer->output_shape();
    const auto slice_of = [&](int g) -> const float* {
      return reinterpret_cast<const float*>(members[g].slots[coded_received[g]].buffer.data() + sizeof(Header));
    };
    int any = 0;
    while (coded_received[any] < 0) ++any;
    Header h;
    std::memcpy(&h, members[any].slots[coded_received[any]].buffer.data(), sizeof h);
    CHORUS_ASSERT(h.seq == i, "rank ", me, " stage ", s, ": expected frame ", i, ", got ", h.seq);
    origin[s + 1] = h.origin;
    produced_at = 0;
    for (int g = 0; g <= k; ++g) {
      if (coded_received[g] < 0) continue;
      Header hg;
      std::memcpy(&hg, members[g].slots[coded_received[g]].buffer.data(), sizeof hg);
      produced_at = std::max(produced_at, hg.produced_at);
    }
    Tensor& out = destination(s, 0);
    out.resize(h.frames, out_shape);
    const std::size_t pixels = out.size() / out_shape.c;
    const int C = out_shape.c;
    for (int g = 0; g < k; ++g) {
      const int c0 = members[g].channel_begin, w = members[g].width;
      float* o = out.data() + c0;
      if (coded_received[g] >= 0) {
        const float* x = slice_of(g);
        for (std::size_t p = 0; p < pixels; ++p) std::memcpy(o + p * C, x + p * w, w * sizeof(float));
        continue;
      }
      // Rebuilt: the parity less every other slice, position by position.
      const float* parity = slice_of(k);
      const int W = members[k].width;
      for (std::size_t p = 0; p < pixels; ++p)
        for (int j = 0; j < w; ++j) o[p * C + j] = parity[p * W + j];
      for (int other = 0; other < k; ++other) {
        if (other == g) continue;
        const float* x = slice_of(other);
        const int wo = members[other].width;
        for (std::size_t p = 0; p < pixels; ++p)
          for (int j = 0; j < std::min(w, wo); ++j) o[p * C + j] -= x[p * wo + j];
      }
      ++stats.rebuilt_frames[s - 1];
    }
    coded_activation[s].apply(out.data(), out.size(), C);
    // The slots are free again; the next frame's receives go up now, to land while this one computes.
    for (int g = 0; g <= k; ++g)
      if (coded_received[g] >= 0) members[g].slots[coded_received[g]].frame = -1;
    const int next = next_task(s, i);
    post_coded(s, next);
  }

  // After the end: every member's slices still owed (late ones) and its end of stream.
  void drain_coded(int s) {
    for (CodedMember& member : coded_in[s]) {
      ends_seen[s][member.rank] = 1;
      if (member.rank == me) continue;  // its end was local
      for (;;) {
        CodedSlot* oldest = nullptr;
        for (CodedSlot& slot : member.slots)
          if (slot.frame >= 0 && !slot.arrived && (!oldest || slot.frame < oldest->frame)) oldest = &slot;
        if (!oldest) break;
        wait_for(oldest->request, cat(peer(member.rank, s - 1), ", for its slices and end of stream").c_str());
        oldest->arrived = true;
        oldest->request = -1;
        Header h;
        std::memcpy(&h, oldest->buffer.data(), sizeof h);
        if (h.kind == Kind::end) {
          member.ended = true;
        } else {
          oldest->frame = -1;
          stats.bytes_received += member.bytes;
          stats.bytes_received_from[member.rank] += member.bytes;
        }
      }
      if (!member.ended) {  // its end was not posted for yet
        std::vector<char> buffer(std::max(member.bytes, sizeof(Header)));
        wait_for(t.irecv(member.rank, kDataTag + s, buffer.data(), buffer.size()),
                 cat(peer(member.rank, s - 1), ", for its end of stream").c_str());
        member.ended = true;
      }
    }
  }

  // The slot of frame i for this rank's own slice (a member of parity stage s - 1 that is also
  // one of its consumers), posted now if it was not.
  CodedSlot& own_slot(int s, int i) {
    post_coded(s, i);
    for (CodedMember& member : coded_in[s])
      if (member.rank == me)
        for (CodedSlot& slot : member.slots)
          if (slot.frame == i) return slot;
    fail("rank ", me, ": no slot for its own slice of frame ", i, " into ", stage_label(s));
  }

  // Writes frame i's header and `slice` into `buffer`.
  void pack_slice(std::vector<char>& buffer, int s, int i, const Tensor& slice) {
    buffer.resize(sizeof(Header) + slice.size() * sizeof(float));
    Header h{i, Kind::data, slice.frames(), reference_now(), origin[s]};
    std::memcpy(buffer.data(), &h, sizeof h);
    std::memcpy(buffer.data() + sizeof h, slice.data(), slice.size() * sizeof(float));
  }

  // Frame i's slice of parity stage s - 1 (this rank's share) to every receiver of role s; this
  // rank's own consumer role takes it from its slot.
  void send_slice(int s, int i, const Tensor& slice) {
    const double t0 = now_seconds(t);
    OutgoingSend* out = nullptr;
    for (int r : all_ranks_of[s]) {
      if (!receives(s, i, r)) continue;
      if (r == me) {
        CodedSlot& own = own_slot(s, i);
        pack_slice(own.buffer, s, i, slice);
        own.arrived = true;
        continue;
      }
      if (!out) {
        out = &start_send(s + 1, i);
        out->used = 1;
        if (out->buffers.empty()) out->buffers.emplace_back();
        pack_slice(out->buffers[0], s, i, slice);
      }
      const std::vector<char>& buffer = out->buffers[0];
      post_send(*out, r, kDataTag + s, buffer);
    }
    stats.send_s += now_seconds(t) - t0;
    reap_sends(false);
  }

  // Posts frame i's receive from every member of stage s - 1 that sends this rank pieces (once);
  // this rank's own pieces (it computes a tile and takes some of the output) are put there by
  // send_tiles.
  void post_tiles(int s, int i) {
    for (TileSender& sender : tiles_in[s]) post_slot(sender.slots, sender.rank, sender.bytes, kDataTag + s, i);
  }

  CodedSlot& tile_slot(int s, TileSender& sender, int i) {
    for (CodedSlot& slot : sender.slots)
      if (slot.frame == i) return slot;
    fail("rank ", me, ": no slot for frame ", i, " from ", peer(sender.rank, s - 1));
  }

  // Role s's input for frame i from the tiles of stage s - 1's members; false at the end.
  bool receive_tiles(int s, int i) {
    const double t0 = now_seconds(t);
    post_tiles(s, i);
    bool end = false, data = false;
    produced_at = 0;
    for (TileSender& sender : tiles_in[s]) {
      CodedSlot& slot = tile_slot(s, sender, i);
      if (sender.rank == me && !slot.arrived) {
        CHORUS_ASSERT(local_end[s], "rank ", me, ": no pieces of its own tile for frame ", i, " into ", stage_label(s));
        end = true;
        continue;
      }
      if (sender.rank != me) {
        wait_for(slot.request, waiting_for(sender.rank, s - 1, "for frame", i));
        slot.request = -1;
        slot.arrived = true;
      }
      Header h;
      std::memcpy(&h, slot.buffer.data(), sizeof h);
      if (h.kind == Kind::end) {
        ends_seen[s][sender.rank] = 1;
        end = true;
        continue;
      }
      CHORUS_ASSERT(h.seq == i, "rank ", me, " stage ", s, ": expected frame ", i, ", got ", h.seq, " from rank ",
                    sender.rank);
      data = true;
      origin[s + 1] = h.origin;
      produced_at = std::max(produced_at, h.produced_at);
      if (sender.rank != me) {
        stats.bytes_received += sender.bytes;
        stats.bytes_received_from[sender.rank] += sender.bytes;
      }
    }
    stats.wait_s += now_seconds(t) - t0;
    if (end) {
      // Every member ends the stream after the same frame.
      CHORUS_ASSERT(!data, "rank ", me, ": some members of ", stage_label(s - 1), " ended the stream at frame ", i,
                    " and some sent it");
      if (local_end[s]) ends_seen[s][me] = 1;
      return false;
    }
    Tensor& value = destination(s, 0);
    value.resize(1, model.shape_of(live[s][0]));
    const int mine = member_of(s, me);
    for (TileSender& sender : tiles_in[s]) {
      CodedSlot& slot = tile_slot(s, sender, i);
      partition::unpack_pieces(hand_offs[s - 1]->pieces[sender.member][mine],
                               reinterpret_cast<const float*>(slot.buffer.data() + sizeof(Header)), value.frame(0));
      slot.frame = -1;
    }
    // The next frame's receives go up now, to land while this one computes.
    post_tiles(s, next_task(s, i));
    return true;
  }

  // Frame i's pieces of this member's tile of stage s - 1 to every receiver of role s that
  // takes some (its own receiver role from its slot).
  void send_tiles(int s, int i, const Tensor& tile) {
    const double t0 = now_seconds(t);
    CHORUS_ASSERT(tile.frames() == 1, "tiles are handed on a frame at a time");
    const int g = member_index(s - 1, me);
    const Header h{i, Kind::data, 1, reference_now(), origin[s]};
    const auto write = [&](std::vector<char>& buffer, const std::vector<partition::HandOffPiece>& pieces,
                           std::size_t floats) {
      buffer.resize(sizeof(Header) + floats * sizeof(float));
      std::memcpy(buffer.data(), &h, sizeof h);
      partition::pack_pieces(pieces, tile.frame(0), reinterpret_cast<float*>(buffer.data() + sizeof h));
    };
    OutgoingSend* out = nullptr;
    for (int r : all_ranks_of[s]) {
      if (!receives(s, i, r)) continue;
      const int member = member_of(s, r);
      const auto& pieces = hand_offs[s - 1]->pieces[g][member];
      if (pieces.empty()) continue;
      const std::size_t floats = hand_offs[s - 1]->floats(g, member);
      if (r == me) {
        post_tiles(s, i);
        for (TileSender& sender : tiles_in[s])
          if (sender.rank == me) {
            CodedSlot& own = tile_slot(s, sender, i);
            write(own.buffer, pieces, floats);
            own.arrived = true;
          }
        continue;
      }
      if (!out) out = &start_send(s + 1, i);
      if (out->buffers.size() <= out->used) out->buffers.emplace_back();
      std::vector<char>& buffer = out->buffers[out->used++];
      write(buffer, pieces, floats);
      post_send(*out, r, kDataTag + s, buffer);
    }
    stats.send_s += now_seconds(t) - t0;
    reap_sends(false);
  }

  // After the end: the ends still owed by members that send this rank pieces.
  void drain_tiles(int s) {
    for (TileSender& sender : tiles_in[s]) {
      if (sender.rank == me || ends_seen[s][sender.rank]) continue;
      for (CodedSlot& slot : sender.slots) {
        if (slot.frame < 0 || slot.arrived) continue;
        wait_for(slot.request, cat(peer(sender.rank, s - 1), ", for its end of stream").c_str());
        slot.request = -1;
        slot.arrived = true;
        Header h;
        std::memcpy(&h, slot.buffer.data(), sizeof h);
        CHORUS_ASSERT(h.kind == Kind::end, "rank ", me, " stage ", s, ": data after the end from rank ", sender.rank);
        ends_seen[s][sender.rank] = 1;
      }
    }
  }

  // Sends `buffer` (one of out's) to rank r and counts its bytes.
  void post_send(OutgoingSend& out, int r, int tag, const std::vector<char>& buffer) {
    out.requests.push_back(t.isend(r, tag, buffer.data(), buffer.size()));
    out.to.push_back(r);
    stats.bytes_sent += buffer.size();
    stats.bytes_sent_to[r] += buffer.size();
  }

  void reap_sends(bool all) {
    const double t0 = now_seconds(t);
    // A rank that has not taken several messages has most likely not taken the rest: those are
    // not tested this time (a stalled parity member may owe thousands, tested on every send).
    constexpr char kUntakenToSkip = 4;
    slow_ranks.assign(t.size(), 0);
    for (auto& pool : outgoing)
      for (OutgoingSend& out : pool) {
        if (!out.busy) continue;
        bool done = true;
        for (std::size_t k = 0; k < out.requests.size(); ++k) {
          auto& r = out.requests[k];
          if (r < 0) continue;
          if (all)
            t.wait(r), r = -1;
          else if (slow_ranks[out.to[k]] < kUntakenToSkip && t.test(r))
            r = -1;
          else
            done = false, ++slow_ranks[out.to[k]];
        }
        if (done) out.busy = false, out.requests.clear(), out.to.clear();
      }
    stats.send_s += now_seconds(t) - t0;
  }

  // A free send buffer of pool `p` (pools settle at the frames in flight).
  OutgoingSend& free_send(int p) {
    for (int pass = 0; pass < 2; ++pass) {
      for (OutgoingSend& out : outgoing[p])
        if (!out.busy) return out;
      reap_sends(false);  // sends that ended since the last look free their buffers
    }
    if (send_capacity[p] == 0 || static_cast<int>(outgoing[p].size()) < send_capacity[p]) {
      OutgoingSend& out = outgoing[p].emplace_back();
      out.requests.reserve(t.size());
      out.to.reserve(t.size());
      return out;
    }
    // Full: wait for the oldest frame's send to be taken.
    OutgoingSend* oldest = &outgoing[p].front();
    for (OutgoingSend& out : outgoing[p])
      if (out.frame < oldest->frame) oldest = &out;
    const double t0 = now_seconds(t);
    for (std::size_t k = 0; k < oldest->requests.size(); ++k)
      if (oldest->requests[k] >= 0) {
        wait_for(oldest->requests[k], waiting_for(oldest->to[k], p - 1, "to take frame", oldest->frame));
        oldest->requests[k] = -1;
      }
    stats.send_s += now_seconds(t) - t0;
    oldest->busy = false;
    oldest->requests.clear();
    oldest->to.clear();
    return *oldest;
  }

  // A free send buffer of pool `p`, taken for frame i's messages (none written yet).
  OutgoingSend& start_send(int p, int i) {
    OutgoingSend& out = free_send(p);
    out.busy = true;
    out.frame = i;
    out.used = 0;
    return out;
  }

  // Hands role s's input for frame i to its receivers (local ones through the mailbox).
  void send(int s, int i, const std::vector<const Tensor*>& values) {
    const double t0 = now_seconds(t);
    OutgoingSend* out = nullptr;
    bool local = false;
    const auto& to = all_ranks_of[s];
    const bool own_rows = rows_differ(s);
    for (int r : to) {
      if (!receives(s, i, r)) continue;
      if (r == me) {
        local = true;
        continue;
      }
      if (!out) out = &start_send(s + 1, i);
      std::vector<char>* buffer = nullptr;
      if (!own_rows && out->used > 0) {
        buffer = &out->buffers[0];  // every receiver takes the same message
      } else {
        if (out->buffers.size() <= out->used) out->buffers.emplace_back();
        buffer = &out->buffers[out->used++];
        pack(*buffer, s, member_of(s, r), i, values);
      }
      post_send(*out, r, kDataTag + s, *buffer);
    }
    if (local) {
      Mail* mail = nullptr;
      for (Mail& m : mailbox[s])
        if (m.frame < 0) mail = &m;
      if (!mail) mail = &mailbox[s].emplace_back();
      mail->frame = i;
      mail->ready_at = t0 + clock_offset;
      mail->origin = origin[s];
      mail->values.resize(values.size());
      for (std::size_t k = 0; k < values.size(); ++k) mail->values[k] = *values[k];
    }
    stats.send_s += now_seconds(t) - t0;
    reap_sends(false);
  }

  // Send buffers and mailboxes, made now for the frames in flight at once: the source's
  // lookahead, two frames elsewhere (one more per further receiver: replicas take turns), the
  // sink's lag. Sends wait for a buffer beyond that (send_capacity); mailboxes never need more,
  // as each rank takes its local mail within those ticks.
  void size_pools(int window, int lookahead) {
    for (auto& pool : outgoing) pool.reserve(window + t.size() + 2);
    for (auto& box : mailbox) box.reserve(window + 2);
    send_capacity.assign(S + 2, 0);
    // A parity stage's producer may run ahead of a member that stalled by up to this many bytes
    // of messages (their sends wait in buffers made then, and kept); beyond that it waits.
    constexpr double kParityLagBytes = 32e6;
    const auto add_sends = [&](int p, int count, std::size_t bytes) {
      while (static_cast<int>(outgoing[p].size()) < count) {
        OutgoingSend& out = outgoing[p].emplace_back();
        out.buffers.resize(p == 0 || (!rows_differ(p - 1) && !hands_on(p - 2)) ? 1 : rows[p - 1].size());
        for (auto& b : out.buffers) b.reserve(bytes);
        out.requests.reserve(t.size());
        out.to.reserve(t.size());
      }
    };
    add_sends(0, window + t.size(), sizeof(Header));  // credits and ends
    for (int s = 0; s <= S; ++s) {
      // Whether this rank sends role s's input (it is the source, or stage s - 1's producer).
      const bool produces = s == 0
                                ? me == plan.plan.source
                                : has_role(s - 1) && (stage(s - 1).mode == StageMode::replicate ||
                                                      stage(s - 1).ranks[0] == me || coded(s - 1) || hands_on(s - 1));
      if (!produces) continue;
      const auto& to = all_ranks_of[s];
      const int remote = static_cast<int>(to.size() - std::count(to.begin(), to.end(), me));
      const int in_flight = s == 0 ? lookahead + 2 : 2;
      if (remote > 0) {
        send_capacity[s + 1] = in_flight + remote - 1;
        add_sends(s + 1, send_capacity[s + 1],
                  coded(s - 1)      ? coded_message_bytes(s - 1, member_index(s - 1, me))
                  : hands_on(s - 1) ? largest_tile_message(s)
                                    : largest_message_bytes(s));
        if (coded(s))
          send_capacity[s + 1] += static_cast<int>(
              std::clamp(kParityLagBytes / static_cast<double>(largest_message_bytes(s)), 16.0, 1e5));
      }
      if (remote < static_cast<int>(to.size()))
        while (static_cast<int>(mailbox[s].size()) < (s == S ? plan.sink_lag + 2 : in_flight)) {
          Mail& mail = mailbox[s].emplace_back();
          for (int v : live[s]) mail.values.emplace_back(1, model.shape_of(v));
        }
    }
  }

  // A header-only message (end of stream, credit) from pool 0.
  void send_header(int rank, int tag, const Header& h) {
    OutgoingSend& out = free_send(0);
    out.busy = true;
    out.frame = static_cast<int>(h.seq);
    if (out.buffers.empty()) out.buffers.emplace_back();
    out.used = 1;
    std::vector<char>& buffer = out.buffers[0];
    buffer.resize(sizeof h);
    std::memcpy(buffer.data(), &h, sizeof h);
    out.requests.push_back(t.isend(rank, tag, buffer.data(), buffer.size()));
    out.to.push_back(rank);
  }

  void send_end(int s) {
    for (int r : all_ranks_of[s]) {
      if (r == me)
        local_end[s] = 1;
      else
        send_header(r, kDataTag + s, Header{-1, Kind::end, 0, 0, {}});
    }
  }

  // After the end: take the end-of-stream messages of every other upstream sender.
  void drain_ends(int s) {
    if (coded(s - 1)) return drain_coded(s);
    if (hands_on(s - 1)) drain_tiles(s);  // then the ends of members that sent it nothing
    for (int from : all_producers(s - 1)) {
      if (from == me || ends_seen[s][from]) continue;
      std::vector<char> buffer(largest_message_bytes(s));
      wait_for(t.irecv(from, kDataTag + s, buffer.data(), buffer.size()),
               cat(peer(from, s - 1), ", for its end of stream").c_str());
      Header h;
      std::memcpy(&h, buffer.data(), sizeof h);
      CHORUS_ASSERT(h.kind == Kind::end, "rank ", me, " stage ", s, ": data after the end from rank ", from);
      ends_seen[s][from] = 1;
    }
  }
};

Pipeline::Pipeline(Transport& transport, const model::Model& model, const plan::ResolvedPlan& plan,
                   std::vector<std::unique_ptr<partition::StageWorker>> workers, double stall_timeout_s)
    : impl_(std::make_unique<Impl>(transport, model, plan)) {
  impl_->stall_timeout_s = stall_timeout_s;
  std::string held;
  for (auto& w : workers) {
    const int s = w->stage();
    impl_->stats.weight_bytes += w->weight_bytes();
    held += (held.empty() ? "" : "; ") + w->layers_held();
    const auto& st = plan.stages[s];
    if (st.ranks.size() > 1 && st.mode != StageMode::single && st.mode != StageMode::replicate && !st.parity)
      impl_->exchanges[s] = std::make_unique<TransportPeerExchange>(
          transport, st.ranks, w->member(), kExchangeTag + s, kSumTag + s, impl_->stats, stall_timeout_s);
    for (int k = 0; k < w->outputs(); ++k) impl_->worker_outputs[s].push_back(&w->output(k));
    impl_->workers[s] = std::move(w);
  }
  impl_->stats.layers = held.empty() ? "-" : held;
}

Pipeline::~Pipeline() = default;

std::size_t message_header_bytes() { return sizeof(Header); }

void Pipeline::set_clock_offset(double seconds) { impl_->clock_offset = seconds; }

void Pipeline::set_pacer(partition::LayerPacer* pacer) { impl_->pacer = pacer; }

void Pipeline::set_parity_wait(double seconds) { impl_->parity_wait_s = seconds; }

void Pipeline::set_hosts(std::vector<std::string> hosts) {
  impl_->hosts = std::move(hosts);
  for (auto& [s, exchange] : impl_->exchanges) exchange->set_label(impl_->stage_label(s), impl_->hosts);
}

std::string Pipeline::describe_rank(int rank) const {
  std::string stages;
  for (int s = 0; s < impl_->S; ++s)
    if (impl_->member_index(s, rank) >= 0) stages += (stages.empty() ? ", " : "; ") + impl_->stage_label(s);
  return cat("rank ", rank, " on ", impl_->host_of(rank), stages);
}

PipelineResult Pipeline::run(io::FrameStream* source,
                             const std::function<void(int, const FrameOrigin&, const std::vector<Tensor>&)>& on_output,
                             int frame_count) {
  Impl& x = *impl_;
  Transport& t = x.t;
  const int S = x.S, me = x.me;
  const int source_rank = x.plan.plan.source, sink_rank = x.plan.plan.sink;
  const int window = x.plan.max_in_flight;
  const bool credits = source_rank != sink_rank;
  PipelineResult result;
  std::vector<double> start_times;
  // Per-frame records, sized now so that the steady state does not grow them.
  // A stream of unknown length: room for a few minutes of video, then amortised growth.
  const int expected_frames = frame_count >= 0 ? frame_count : 8192;
  start_times.reserve(expected_frames);
  result.captured.reserve(expected_frames);
  result.finish.reserve(expected_frames);
  result.delivered.reserve(expected_frames);
  for (int s = 0; s < S; ++s)
    if (x.stage(s).mode == StageMode::replicate) x.replica_turns[s].reserve(expected_frames + window + 2);

  // The order every rank runs its tasks in, which needs no coordination and cannot deadlock:
  // by key(i, s) = A i + B s + shift(s) for stage s of frame i (the source is -1, the sink S),
  // later stages first on a tie. Each task's inputs, and the credit the source waits for (the
  // sink's frame i - window), come from tasks of smaller keys, so the earliest unfinished task
  // can always run.
  //  - Throughput (max_in_flight >= stages + 2, the default): A = B = 1, the source
  //    `lookahead` frames ahead, a sink that also computes `lag` frames behind.
  //  - Fewer frames in flight (--max-in-flight N, 1: each frame starts when the one before has
  //    left the sink, so latency is one frame's): A = stages + 2, B = N, no lookahead, no lag;
  //    sink(i - N) = A i - 2 N comes before source(i) = A i - N.
  const bool few_in_flight = window < S + 2;
  const int lag = few_in_flight ? 0 : x.plan.sink_lag;
  // A source whose frames go to this rank alone is not read ahead: this rank computes them one
  // after another anyway, so a frame read early only waits here, its latency counting (a
  // three-stage pipeline of AlexNet on emulated Pi 3s: 2558 ms a frame against 1025 with the
  // same 1.96 frames/s), and a live one (a camera, a stream, --realtime) where no drop policy
  // reaches it. A source that feeds other ranks (replicas, members of a split) reads ahead, so
  // that they have frames while this rank computes (9 replicas took 7.6 frames/s without it,
  // 9.1 with).
  const auto& first_ranks = x.all_ranks_of[0];
  const bool to_itself = source && std::all_of(first_ranks.begin(), first_ranks.end(), [&](int r) { return r == me; });
  const int lookahead = few_in_flight || to_itself ? 0 : std::max(0, window - S - 2 - lag - 2 * x.plan.burst_frames);
  const long key_frame = few_in_flight ? S + 2 : 1, key_stage = few_in_flight ? window : 1;
  const auto key_shift = [&](int s) -> long { return s < 0 ? -lookahead : s == S ? lag : 0; };
  x.size_pools(window, lookahead);
  // The rank's primary role (its first stage, else the sink, else the source) counts its frames
  // for the figures of the first frame and of the steady state: frames from `warm_frame` on,
  // once the pipeline has filled (max_in_flight frames, and at least a quarter of the run: MPI's
  // own buffers grow a little longer) and every pool has reached its size; a run of fewer than
  // twice max_in_flight frames counts its second half.
  int primary = x.has_role(S) ? S : -1;
  for (int s = S - 1; s >= 0; --s)
    if (x.has_role(s)) primary = s;
  // A stream of unknown length: from frame 64 on (or the window, if larger).
  const int warm_frame = frame_count >= 0 ? std::min(expected_frames / 2, std::max(window, expected_frames / 4))
                                          : std::max(window, 64);
  int primary_tasks = 0;
  FrameCounters counters;
  // Read after every task, so that the steady state ends with the rank's last frame, before the
  // end of the stream and the wind-down.
  const auto primary_done = [&](int i) {
    counters.last = read_process_counters();
    counters.last_tasks = ++primary_tasks;
    if (primary_tasks == 1) counters.first = counters.last;
    if (counters.warm_tasks < 0 && i >= warm_frame) {
      counters.warm = counters.last;
      counters.warm_tasks = primary_tasks;
    }
  };
  counters.start = read_process_counters();
  const double t_begin = now_seconds(t);

  // Pre-post the first receive of every role fed from another rank.
  for (int s = 0; s <= S; ++s)
    if (x.has_role(s)) {
      int first = x.has_task(s, 0) ? 0 : x.next_task(s, 0);
      if (x.coded(s - 1))
        x.post_coded(s, first);
      else if (x.hands_on(s - 1))
        x.post_tiles(s, first);
      else if (x.producer(s - 1, first) != me)
        x.post_receive(s, first);
    }
  if (me == sink_rank) {
    x.sink_values.resize(x.live[S].size());
    for (std::size_t k = 0; k < x.live[S].size(); ++k) x.sink_values[k].resize(1, x.model.shape_of(x.live[S][k]));
  }
  if (me == source_rank) {
    std::size_t floats = 0;
    for (const auto& in : x.model.inputs()) {
      x.source_inputs.emplace_back(1, in.shape);
      floats += in.shape.size();
    }
    for (const auto& in : x.source_inputs) x.source_values.push_back(&in);
    if (x.source_inputs.size() > 1) x.source_frame.resize(floats);
  }

  std::set<int> roles;
  for (int s = -1; s <= S; ++s)
    if (x.has_role(s)) roles.insert(s);
  int injected = 0;  // frames the source has sent

  // In throughput order the source runs `lookahead` frames ahead of stage 0, so that a rank that
  // is both source and a busy worker (or a replica) has handed out enough frames before it
  // starts computing. The credit window leaves room for it: lookahead + stages + 2 + sink lag +
  // 2 x burst frames <= max_in_flight (see ResolvedPlan). A sink that also computes trails by
  // sink_lag frames (see ResolvedPlan).
  const auto end_role = [&](int s) {
    x.ended[s + 1] = 1;
    ++x.roles_ended;
  };
  // The sink's part of frame i, its input received. The sink takes its frames in order; a
  // real-time source on the sink's rank lets it take them while waiting for the camera (below),
  // so `sink_next` is the first it has not taken.
  int sink_next = 0;
  const auto run_sink = [&](int i) {
    on_output(i, x.origin[S + 1], x.sink_values);
    // A frame is done when its output was ready: a sink that trails (sink_lag) or was busy
    // computing collects it later, and that delay is not the pipeline's. What a user of the
    // results sees is when the sink had it.
    result.finish.push_back(std::min(x.reference_now(), x.produced_at));
    result.delivered.push_back(x.reference_now());
    if (credits) {
      x.send_header(source_rank, kCreditTag, Header{i, Kind::data, 0, 0, {}});
      x.stats.bytes_sent += sizeof(Header);
      x.stats.bytes_sent_to[source_rank] += sizeof(Header);
    }
    if (primary == S) primary_done(i);
    sink_next = x.next_task(S, i);
  };
  // The sink's inputs that have arrived, out of the static order (the loop skips them later).
  const auto serve_sink = [&] {
    while (!x.ended[S + 1] && x.has_task(S, sink_next) && x.input_arrived(S, sink_next)) {
      if (x.receive(S, sink_next))
        run_sink(sink_next);
      else
        end_role(S);
    }
  };
  // A sink that computes too, fed by other ranks, serves them between its layers.
  bool sink_fed_by_others = false;
  if (me == sink_rank && S > 0)
    for (int r : x.stage(S - 1).ranks) sink_fed_by_others |= r != me;
  ServeSinkBetweenLayers sink_between_layers(x.pacer, serve_sink);
  partition::LayerPacer* const pacer = sink_fed_by_others ? &sink_between_layers : x.pacer;
  // How long a real-time source waits for its next frame between looks at the sink's input,
  // while a result is due; with none in flight it waits for the frame itself (the feed wakes
  // it), looking up now and then only to stay responsive.
  constexpr double kSinkPollSeconds = 200e-6, kIdleWaitSeconds = 0.05;
  for (long key = -key_stage - lookahead; x.roles_ended < static_cast<int>(roles.size()); ++key) {
    // Within a key, later stages first: results leave before new frames enter.
    for (int s = S; s >= -1; --s) {
      const long scaled = key - key_stage * s - key_shift(s);
      if (scaled < 0 || scaled % key_frame != 0) continue;
      const long i_long = scaled / key_frame;
      if (x.ended[s + 1] || !x.has_task(s, static_cast<int>(i_long))) continue;
      const int i = static_cast<int>(i_long);
      if (s == S && i < sink_next) continue;  // taken while a real-time source waited
      if (s < 0) {  // source: read frame i and inject it
        if (credits && i >= window) {
          const double t0 = now_seconds(t);
          while (x.credits_received <= i - window) {
            x.wait_for(t.irecv(sink_rank, kCreditTag, x.credit_buffer.data(), x.credit_buffer.size()),
                       x.waiting_for(sink_rank, S, "to take frame", i - window));
            x.count_credit();
          }
          x.stats.wait_s += now_seconds(t) - t0;
        }
        const double t0 = now_seconds(t);
        // A real-time source on the sink's rank: results that arrive while the camera's next
        // frame is not there yet go out now, not after it (a static order would hold them).
        if (source && me == sink_rank)
          while (!source->frame_ready(sink_next < injected ? kSinkPollSeconds : kIdleWaitSeconds)) serve_sink();
        io::FrameInfo info;
        const bool more = source && (x.source_inputs.size() == 1
                                         ? source->next(x.source_inputs[0].data(), info)  // the frame is the input
                                         : source->next(x.source_frame.data(), info));    // every input's, back to back
        x.stats.wait_s += now_seconds(t) - t0;
        if (!more) {
          x.send_end(0);
          end_role(s);
          continue;
        }
        if (x.source_inputs.size() > 1) {
          const float* next = x.source_frame.data();
          for (auto& in : x.source_inputs) {
            std::copy(next, next + in.size(), in.data());
            next += in.size();
          }
        }
        ++injected;
        start_times.push_back(x.reference_now());
        x.origin[0] = FrameOrigin{info.index, start_times.back() - info.age_s};
        result.captured.push_back(x.origin[0].captured_at);
        x.send(0, i, x.source_values);
        if (primary == s) primary_done(i);
        continue;
      }
      if (!x.receive(s, i)) {
        // End of stream: pass it on (if this rank sends for the stage) and stop the role.
        if (s < S && (x.producer(s, i) == me || x.coded(s) || x.hands_on(s))) x.send_end(s + 1);
        end_role(s);
        continue;
      }
      if (s == S) {  // sink
        run_sink(i);
        continue;
      }
      const double t0 = now_seconds(t);
      const double exchange_before = x.stats.exchange_s;
      auto it = x.exchanges.find(s);
      partition::StageWorker& worker = *x.workers.at(s);
      worker.run(it == x.exchanges.end() ? nullptr : it->second.get(), pacer);
      x.stats.compute_s += now_seconds(t) - t0 - (x.stats.exchange_s - exchange_before);
      ++x.stats.frames;
      if (x.coded(s))
        x.send_slice(s + 1, i, worker.output(0));
      else if (x.hands_on(s))
        x.send_tiles(s + 1, i, worker.output(0));
      else if (x.producer(s, i) == me)
        x.send(s + 1, i, x.worker_outputs[s]);
      if (primary == s) primary_done(i);
    }
  }
  // Wind down: end messages still owed to us, credits still in flight, sends still leaving.
  for (int s : roles)
    if (s >= 0) x.drain_ends(s);
  if (credits && me == source_rank)
    while (x.credits_received < injected) {
      x.wait_for(t.irecv(sink_rank, kCreditTag, x.credit_buffer.data(), x.credit_buffer.size()),
                 x.waiting_for(sink_rank, S, "to take frame", x.credits_received));
      x.count_credit();
    }
  x.reap_sends(true);
  x.stats.wall_s = now_seconds(t) - t_begin;
  x.stats.peak_rss_bytes = static_cast<double>(peak_rss_bytes());
  if (primary_tasks > 0) {
    x.stats.first_frame_minor_faults = static_cast<double>(counters.first.minor_faults - counters.start.minor_faults);
    x.stats.first_frame_major_faults = static_cast<double>(counters.first.major_faults - counters.start.major_faults);
    if (counters.first.heap_allocations >= 0)
      x.stats.first_frame_heap_allocations =
          static_cast<double>(counters.first.heap_allocations - counters.start.heap_allocations);
  }
  const int steady = counters.warm_tasks < 0 ? 0 : counters.last_tasks - counters.warm_tasks;
  x.stats.steady_frames = steady;
  if (steady > 0) {
    x.stats.minor_faults_per_frame =
        static_cast<double>(counters.last.minor_faults - counters.warm.minor_faults) / steady;
    x.stats.major_faults_per_frame =
        static_cast<double>(counters.last.major_faults - counters.warm.major_faults) / steady;
    if (counters.last.heap_allocations >= 0)
      x.stats.heap_allocations_per_frame =
          static_cast<double>(counters.last.heap_allocations - counters.warm.heap_allocations) / steady;
    if (counters.last.mpi_heap_allocations >= 0)
      x.stats.mpi_heap_allocations_per_frame =
          static_cast<double>(counters.last.mpi_heap_allocations - counters.warm.mpi_heap_allocations) / steady;
    if (counters.last.ffmpeg_heap_allocations >= 0)
      x.stats.ffmpeg_heap_allocations_per_frame =
          static_cast<double>(counters.last.ffmpeg_heap_allocations - counters.warm.ffmpeg_heap_allocations) / steady;
  }
  result.stats = x.stats;
  result.start = std::move(start_times);
  return result;
}

}  // namespace chorus::runtime
