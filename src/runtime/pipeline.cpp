#include "runtime/pipeline.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "core/error.h"
#include "core/memory.h"
#include "partition/live_values.h"
#include "runtime/failure_notice.h"

namespace chorus::runtime {

using plan::StageMode;

namespace {

constexpr int kDataTag = 1;           // + receiving stage (the sink is stage S)
constexpr int kExchangeTag = 10000;   // + stage
constexpr int kCreditTag = 30000;

enum class Kind : std::int32_t { data = 0, end = 1 };

struct Header {
  std::int64_t seq;
  Kind kind;
  std::int32_t frames;
  double produced_at = 0;  // sender's clock when the values were ready (the sink's finish time)
};

double now_seconds(const Transport& t) { return t.time(); }

// Intra-stage all-gather over point-to-point messages (split stages).
class TransportPeerExchange : public partition::PeerExchange {
 public:
  TransportPeerExchange(Transport& t, std::vector<int> ranks, int member, int tag, report::RankStats& stats,
                  double timeout_s)
      : t_(t), ranks_(std::move(ranks)), member_(member), tag_(tag), stats_(stats), timeout_s_(timeout_s) {}

  void set_label(std::string label, std::vector<std::string> hosts) {
    label_ = std::move(label);
    hosts_ = std::move(hosts);
  }

  void all_gather(const std::vector<float>& mine, const std::vector<std::size_t>& counts,
                  std::vector<std::vector<float>>& parts) override {
    const double t0 = t_.time();
    parts.assign(ranks_.size(), {});
    std::vector<Transport::Request> requests;
    for (std::size_t m = 0; m < ranks_.size(); ++m) {
      if (static_cast<int>(m) == member_) continue;
      parts[m].resize(counts[m]);
      requests.push_back(t_.irecv(ranks_[m], tag_, parts[m].data(), counts[m] * sizeof(float)));
      stats_.bytes_received += counts[m] * sizeof(float);
    }
    for (std::size_t m = 0; m < ranks_.size(); ++m) {
      if (static_cast<int>(m) == member_) continue;
      requests.push_back(t_.isend(ranks_[m], tag_, mine.data(), mine.size() * sizeof(float)));
      stats_.bytes_sent += mine.size() * sizeof(float);
    }
    std::string members;
    for (int r : ranks_)
      if (r != ranks_[member_])
        members += cat(members.empty() ? "" : ", ", r, r < static_cast<int>(hosts_.size()) ? " on " + hosts_[r] : "");
    note_waiting(cat("the other members of ", label_, " (rank ", members, ") to swap parts"));
    try {
      for (auto r : requests) t_.wait(r, timeout_s_);
    } catch (const Error&) {
      note_not_waiting();
      fail("the other members of ", label_, " (rank ", members, ") did not swap their parts within ", timeout_s_,
           " s (one of them stalled or died; --stall-timeout sets the limit)");
    }
    note_not_waiting();
    parts[member_] = mine;
    stats_.exchange_s += t_.time() - t0;
  }

 private:
  Transport& t_;
  std::vector<int> ranks_;
  int member_, tag_;
  report::RankStats& stats_;
  double timeout_s_;
  std::string label_ = "a split stage";
  std::vector<std::string> hosts_;
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
  std::vector<std::vector<int>> replica_table;  // per stage: member of frame i (replicate only)
  std::vector<std::vector<int>> live;           // live[s + 1]: values entering stage s
  report::RankStats stats;

  // Receives posted ahead, one per role.
  struct PendingReceive {
    int frame = -1, sender = -1;
    Transport::Request request = -1;
    std::vector<char> buffer;
  };
  std::map<int, PendingReceive> pending;
  struct LocalMail {
    std::vector<Tensor> values;
    double ready_at = 0;
  };
  std::map<std::pair<int, int>, LocalMail> local_mail;  // (stage, frame) -> values
  std::set<int> local_end;                                        // stages told "end" locally
  std::map<int, std::set<int>> ends_seen;                         // stage -> senders whose end arrived
  std::set<int> ended;                                            // roles finished
  struct OutgoingSend {
    std::vector<char> buffer;
    std::vector<Transport::Request> requests;
  };
  std::vector<OutgoingSend> outgoing;
  std::vector<std::string> hosts;  // by rank, for messages
  int credits_received = 0;
  double produced_at = 0;  // of the values received last: when their producer had them ready
  std::vector<char> credit_buffer = std::vector<char>(sizeof(Header));

  Impl(Transport& transport, const model::Model& m, const plan::ResolvedPlan& p)
      : t(transport), model(m), plan(p), S(static_cast<int>(p.stages.size())), me(transport.rank()) {
    replica_table.resize(S);
    for (int s = -1; s < S; ++s) live.push_back(partition::live_values(m, p, s));
    stats.rank = me;
    stats.host = t.host();
  }

  const plan::ResolvedStage& stage(int s) const { return plan.stages[s]; }

  std::string host_of(int rank) const {
    return rank >= 0 && rank < static_cast<int>(hosts.size()) ? hosts[rank] : std::string("?");
  }
  // "stage 1 (fc1..fc1)", or "the source" for s = -1.
  std::string stage_label(int s) const {
    if (s < 0) return "the source";
    if (s >= S) return "the sink";
    return cat("stage ", s, " (", model.node(stage(s).first).name(), "..", model.node(stage(s).last).name(), ")");
  }
  // "rank 1 on pi2, stage 1 (fc1..fc1)": the peer that computes stage s for this frame.
  std::string peer(int rank, int s) const { return cat("rank ", rank, " on ", host_of(rank), ", ", stage_label(s)); }

  // Waits for a request from a peer, saying whom for a termination notice and a stall.
  std::size_t wait_for(Transport::Request request, const std::string& what) {
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
  int replica_of(int s, int i) {
    auto& table = replica_table[s];
    const auto& f = stage(s).fractions;
    while (static_cast<int>(table.size()) <= i) {
      std::vector<int> count(f.size(), 0);
      for (int r : table) ++count[r];
      const double next = table.size() + 1.0;
      int best = 0;
      double best_deficit = -1e300;
      for (std::size_t r = 0; r < f.size(); ++r) {
        double deficit = f[r] * next - count[r];
        if (deficit > best_deficit + 1e-12) best_deficit = deficit, best = static_cast<int>(r);
      }
      table.push_back(best);
    }
    return table[i];
  }

  // The rank that produces stage s's output for frame i (s = -1: the source).
  int producer(int s, int i) {
    if (s < 0) return plan.plan.source;
    const auto& st = stage(s);
    return st.mode == StageMode::replicate ? st.ranks[replica_of(s, i)] : st.ranks[0];
  }

  // Ranks that receive stage s's input for frame i (s = S: the sink).
  std::vector<int> receivers(int s, int i) {
    if (s == S) return {plan.plan.sink};
    const auto& st = stage(s);
    if (st.mode == StageMode::replicate) return {st.ranks[replica_of(s, i)]};
    return st.ranks;
  }

  // Every rank that may send into stage s / that stage s's senders send to (for end-of-stream).
  std::vector<int> all_producers(int s) {
    if (s < 0) return {plan.plan.source};
    const auto& st = stage(s);
    return st.mode == StageMode::replicate ? st.ranks : std::vector<int>{st.ranks[0]};
  }
  std::vector<int> all_receivers(int s) { return s == S ? std::vector<int>{plan.plan.sink} : stage(s).ranks; }

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

  std::size_t message_bytes(int s) const { return sizeof(Header) + partition::live_floats(model, live[s]) * sizeof(float); }

  void post_receive(int s, int frame) {
    const int from = producer(s - 1, frame);
    if (from == me) return;
    PendingReceive& p = pending[s];
    p.frame = frame;
    p.sender = from;
    p.buffer.resize(message_bytes(s));
    p.request = t.irecv(from, kDataTag + s, p.buffer.data(), p.buffer.size());
  }

  // Input of stage s (or the sink) for frame i; false at the end of the stream.
  bool receive(int s, int i, std::vector<Tensor>& values) {
    const int from = producer(s - 1, i);
    const double t0 = now_seconds(t);
    if (from == me) {
      auto it = local_mail.find({s, i});
      if (it == local_mail.end()) {
        CHORUS_ASSERT(local_end.count(s), "rank ", me, ": no local input for stage ", s, " frame ", i);
        ends_seen[s].insert(me);
        return false;
      }
      values = std::move(it->second.values);
      produced_at = it->second.ready_at;
      local_mail.erase(it);
      return true;
    }
    if (!pending.count(s) || pending[s].frame != i) post_receive(s, i);
    PendingReceive p = std::move(pending[s]);
    pending.erase(s);
    const std::size_t got = wait_for(p.request, cat(peer(from, s - 1), ", for frame ", i));
    stats.wait_s += now_seconds(t) - t0;
    Header h;
    std::memcpy(&h, p.buffer.data(), sizeof h);
    if (h.kind == Kind::end) {
      ends_seen[s].insert(from);
      return false;
    }
    CHORUS_ASSERT(h.seq == i, "rank ", me, " stage ", s, ": expected frame ", i, ", got ", h.seq);
    produced_at = h.produced_at;
    stats.bytes_received += got;
    const float* data = reinterpret_cast<const float*>(p.buffer.data() + sizeof(Header));
    values.clear();
    for (int v : live[s]) {
      Tensor tensor(h.frames, model.shape_of(v));
      std::memcpy(tensor.data(), data, tensor.size() * sizeof(float));
      data += tensor.size();
      values.push_back(std::move(tensor));
    }
    // Post the next receive now, so it lands while this frame computes.
    post_receive_ahead(s, i);
    return true;
  }

  void post_receive_ahead(int s, int i) {
    const int next = next_task(s, i);
    if (producer(s - 1, next) != me) post_receive(s, next);
  }

  void reap_sends(bool all) {
    const double t0 = now_seconds(t);
    for (auto it = outgoing.begin(); it != outgoing.end();) {
      bool done = true;
      for (auto& r : it->requests) {
        if (r < 0) continue;
        if (all) t.wait(r), r = -1;
        else if (t.test(r)) r = -1;
        else done = false;
      }
      it = done ? outgoing.erase(it) : it + 1;
    }
    stats.send_s += now_seconds(t) - t0;
  }

  // Hands stage s's input for frame i to its receivers (local ones through the mailbox).
  void send(int s, int i, std::vector<Tensor> values) {
    const double t0 = now_seconds(t);
    std::vector<int> to = receivers(s, i);
    OutgoingSend out;
    for (int r : to) {
      if (r == me) continue;
      if (out.buffer.empty()) {
        out.buffer.resize(sizeof(Header));
        Header h{i, Kind::data, values.empty() ? 1 : values[0].frames(), now_seconds(t)};
        std::memcpy(out.buffer.data(), &h, sizeof h);
        for (const auto& v : values) {
          const char* bytes = reinterpret_cast<const char*>(v.data());
          out.buffer.insert(out.buffer.end(), bytes, bytes + v.size() * sizeof(float));
        }
      }
      out.requests.push_back(t.isend(r, kDataTag + s, out.buffer.data(), out.buffer.size()));
      stats.bytes_sent += out.buffer.size();
    }
    if (std::find(to.begin(), to.end(), me) != to.end()) local_mail[{s, i}] = {std::move(values), t0};
    if (!out.requests.empty()) outgoing.push_back(std::move(out));
    stats.send_s += now_seconds(t) - t0;
    reap_sends(false);
  }

  void send_end(int s) {
    for (int r : all_receivers(s)) {
      if (r == me) {
        local_end.insert(s);
        continue;
      }
      OutgoingSend out;
      out.buffer.resize(sizeof(Header));
      Header h{-1, Kind::end, 0};
      std::memcpy(out.buffer.data(), &h, sizeof h);
      out.requests.push_back(t.isend(r, kDataTag + s, out.buffer.data(), out.buffer.size()));
      outgoing.push_back(std::move(out));
    }
  }

  // After the end: take the end-of-stream messages of every other upstream sender.
  void drain_ends(int s) {
    for (int from : all_producers(s - 1)) {
      if (from == me || ends_seen[s].count(from)) continue;
      std::vector<char> buffer(message_bytes(s));
      wait_for(t.irecv(from, kDataTag + s, buffer.data(), buffer.size()), cat(peer(from, s - 1), ", for its end of stream"));
      Header h;
      std::memcpy(&h, buffer.data(), sizeof h);
      CHORUS_ASSERT(h.kind == Kind::end, "rank ", me, " stage ", s, ": data after the end from rank ", from);
      ends_seen[s].insert(from);
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
    if (st.ranks.size() > 1 && (st.mode == StageMode::split_output || st.mode == StageMode::split_input ||
                                st.mode == StageMode::split_spatial))
      impl_->exchanges[s] = std::make_unique<TransportPeerExchange>(transport, st.ranks, w->member(), kExchangeTag + s,
                                                              impl_->stats, stall_timeout_s);
    impl_->workers[s] = std::move(w);
  }
  impl_->stats.layers = held.empty() ? "-" : held;
}

Pipeline::~Pipeline() = default;

void Pipeline::set_pacer(partition::LayerPacer* pacer) { impl_->pacer = pacer; }

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

PipelineResult Pipeline::run(const io::InputSource* source, const std::function<void(int, const Tensor&)>& on_output) {
  Impl& x = *impl_;
  Transport& t = x.t;
  const int S = x.S, me = x.me;
  const int source_rank = x.plan.plan.source, sink_rank = x.plan.plan.sink;
  const int window = x.plan.max_in_flight;
  const bool credits = source_rank != sink_rank;
  PipelineResult result;
  std::vector<double> start_times;
  const double t_begin = now_seconds(t);

  // Pre-post the first receive of every role fed from another rank.
  for (int s = 0; s <= S; ++s)
    if (x.has_role(s)) {
      int first = x.has_task(s, 0) ? 0 : x.next_task(s, 0);
      if (x.producer(s - 1, first) != me) x.post_receive(s, first);
    }

  std::set<int> roles;
  for (int s = -1; s <= S; ++s)
    if (x.has_role(s)) roles.insert(s);
  const int frames_total = source && me == source_rank ? source->count() : -1;

  // The source runs `lookahead` frames ahead of stage 0, so that a rank that is both source and
  // a busy worker (or a replica) has handed out enough frames before it starts computing. The
  // credit window leaves room for it: lookahead + stages + 2 + sink lag + 2 x burst frames <=
  // max_in_flight (see ResolvedPlan).
  // A sink that also computes trails by sink_lag frames (see ResolvedPlan).
  const int lag = x.plan.sink_lag;
  const int lookahead = std::max(0, window - S - 2 - lag - 2 * x.plan.burst_frames);
  for (long tick = -1 - lookahead; x.ended.size() < roles.size(); ++tick) {
    // Within a tick, later stages first: results leave before new frames enter.
    for (int s = S; s >= -1; --s) {
      const long i_long = tick - s + (s < 0 ? lookahead : 0) - (s == S ? lag : 0);
      if (i_long < 0 || x.ended.count(s) || !x.has_task(s, static_cast<int>(i_long))) continue;
      const int i = static_cast<int>(i_long);
      if (s < 0) {  // source: read frame i and inject it
        if (i >= frames_total) {
          x.send_end(0);
          x.ended.insert(s);
          continue;
        }
        if (credits && i >= window) {
          const double t0 = now_seconds(t);
          while (x.credits_received <= i - window) {
            x.wait_for(t.irecv(sink_rank, kCreditTag, x.credit_buffer.data(), x.credit_buffer.size()),
                       cat("rank ", sink_rank, " on ", x.host_of(sink_rank), ", the sink, to take frame ", i - window));
            ++x.credits_received;
          }
          x.stats.wait_s += now_seconds(t) - t0;
        }
        const double t0 = now_seconds(t);
        Tensor frame(1, x.model.input_shape());
        source->read(i, frame.data());
        x.stats.wait_s += now_seconds(t) - t0;
        start_times.push_back(now_seconds(t));
        std::vector<Tensor> values;
        values.push_back(std::move(frame));
        x.send(0, i, std::move(values));
        continue;
      }
      std::vector<Tensor> values;
      if (!x.receive(s, i, values)) {
        // End of stream: pass it on (if this rank sends for the stage) and stop the role.
        if (s < S && x.producer(s, i) == me) x.send_end(s + 1);
        x.ended.insert(s);
        continue;
      }
      if (s == S) {  // sink
        on_output(i, values.at(0));
        // A frame is done when its output was ready: a sink that trails (sink_lag) or was busy
        // computing collects it later, and that delay is not the pipeline's.
        result.finish.push_back(std::min(now_seconds(t), x.produced_at));
        if (credits) {
          Header h{i, Kind::data, 0};
          Impl::OutgoingSend out;
          out.buffer.resize(sizeof h);
          std::memcpy(out.buffer.data(), &h, sizeof h);
          out.requests.push_back(t.isend(source_rank, kCreditTag, out.buffer.data(), out.buffer.size()));
          x.outgoing.push_back(std::move(out));
        }
        continue;
      }
      const double t0 = now_seconds(t);
      const double exchange_before = x.stats.exchange_s;
      auto* exchange = x.exchanges.count(s) ? x.exchanges[s].get() : nullptr;
      std::vector<Tensor> outputs = x.workers.at(s)->run(std::move(values), exchange, x.pacer);
      x.stats.compute_s += now_seconds(t) - t0 - (x.stats.exchange_s - exchange_before);
      ++x.stats.frames;
      if (x.producer(s, i) == me) x.send(s + 1, i, std::move(outputs));
    }
  }
  // Wind down: end messages still owed to us, credits still in flight, sends still leaving.
  for (int s : roles)
    if (s >= 0) x.drain_ends(s);
  if (credits && me == source_rank)
    for (; x.credits_received < frames_total; ++x.credits_received)
      x.wait_for(t.irecv(sink_rank, kCreditTag, x.credit_buffer.data(), x.credit_buffer.size()),
                 cat("rank ", sink_rank, " on ", x.host_of(sink_rank), ", the sink, to take frame ", x.credits_received));
  x.reap_sends(true);
  x.stats.wall_s = now_seconds(t) - t_begin;
  x.stats.peak_rss_bytes = static_cast<double>(peak_rss_bytes());
  result.stats = x.stats;
  result.start = start_times;
  return result;
}

}  // namespace chorus::runtime
