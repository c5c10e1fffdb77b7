// Groups of ONNX nodes that exporters write for one transformer layer, recognised and made one
// Chorus layer: layer normalisation written out in operators (opset < 17), GELU written with
// Erf, SiLU written as Sigmoid and Mul, and PyTorch's nn.MultiheadAttention (the in-projection, the head split, the scores, the
// softmax, the head merge and the out-projection: about thirty nodes). Each matcher starts at
// the group's first node, checks every node and every constant of the group, and absorbs the
// nodes so that the import loop passes over them. A group that starts like attention but
// differs later is an error naming the node where it differs, not a silent fallback.
#include <algorithm>
#include <cmath>
#include <optional>

#include "io/onnx/onnx_operators.h"
#include "layers/activation_layer.h"
#include "layers/attention.h"
#include "layers/layer_norm.h"

namespace chorus::io {

using namespace chorus::layers;

namespace {

using Dims = std::vector<std::int64_t>;

// Walks a group of nodes forward from its first one, collecting them.
class GroupWalk {
 public:
  GroupWalk(OnnxGraph& g, int first) : g_(g) { nodes_.push_back(first); }

  const onnx::NodeProto& node(int i) const { return g_.proto().node(i); }
  // A node's first output and its input k, or "" where it has none (a malformed file).
  const std::string& out(int i) const { return node(i).output_size() > 0 ? node(i).output(0) : none(); }
  const std::string& in(int i, int k) const { return k < node(i).input_size() ? node(i).input(k) : none(); }
  static const std::string& none() {
    static const std::string empty;
    return empty;
  }
  const std::vector<int>& nodes() const { return nodes_; }

  // The one node reading `value`, if it has op `op` (Shape readers ignored when `shapes_ok`).
  std::optional<int> sole(const std::string& value, const char* op, bool shapes_ok = false) {
    std::optional<int> found;
    if (value.empty() || is_graph_output(value)) return std::nullopt;
    for (int c : g_.consumers(value)) {
      if (shapes_ok && node(c).op_type() == "Shape") continue;
      if (found || node(c).op_type() != op) return std::nullopt;
      found = c;
    }
    if (found) nodes_.push_back(*found);
    return found;
  }
  // Readers of `value`, all of them.
  const std::vector<int>& readers(const std::string& value) const { return g_.consumers(value); }
  void take(int i) { nodes_.push_back(i); }

  bool is_graph_output(const std::string& value) const {
    for (const auto& o : g_.proto().output())
      if (o.name() == value) return true;
    return false;
  }
  // The input of node i that is not `value` (binary operators in either order).
  std::string other_input(int i, const std::string& value) const {
    const auto& n = node(i);
    if (n.input_size() != 2) return {};
    return n.input(0) == value ? n.input(1) : n.input(1) == value ? n.input(0) : std::string{};
  }
  bool is_constant(const std::string& name) const { return !name.empty() && g_.constants().has(name); }
  std::optional<double> scalar(const std::string& name) const {
    if (!is_constant(name)) return std::nullopt;
    auto v = g_.constants().floats(name, name);
    if (v.size() != 1) return std::nullopt;
    return v[0];
  }
  Dims dims(const std::string& name) const { return g_.constants().dims(name); }
  std::vector<std::int64_t> ints_attr(int i, const char* name) const {
    for (const auto& a : node(i).attribute())
      if (a.name() == name) return {a.ints().begin(), a.ints().end()};
    return {};
  }
  std::int64_t int_attr(int i, const char* name, std::int64_t fallback) const {
    for (const auto& a : node(i).attribute())
      if (a.name() == name) return a.i();
    return fallback;
  }
  // A ReduceMean over the last axis of a rank-`rank` value, keeping dims.
  bool reduces_last_axis(int i, int rank) const {
    auto axes = ints_attr(i, "axes");
    if (axes.empty() && node(i).input_size() > 1 && is_constant(node(i).input(1)))
      axes = g_.constants().ints(node(i).input(1), node(i).name());
    return axes.size() == 1 && (axes[0] == -1 || axes[0] == rank - 1) && int_attr(i, "keepdims", 1) == 1;
  }

  void absorb_all() {
    for (int i : nodes_) g_.absorb(i);
  }

 private:
  OnnxGraph& g_;
  std::vector<int> nodes_;
};

// The layer's name: the node's path without its last part ("/encoder/layer_0/ln_1/ReduceMean"
// names "/encoder/layer_0/ln_1"), made unique.
std::string group_name(OnnxNode& n) {
  const std::string& full = n.name();
  const auto slash = full.rfind('/');
  return n.graph().unique_name(slash == std::string::npos || slash == 0 ? full : full.substr(0, slash));
}

// ---- Layer normalisation --------------------------------------------------------------------

// ReduceMean(x) -> Sub(x, mean) -> Pow(d, 2) -> ReduceMean -> Add(eps) -> Sqrt -> Div(d, sqrt)
// [-> Mul(gamma) -> Add(beta)], all over the last axis.
bool fuse_layer_norm(OnnxNode& n, int first) {
  if (n.inputs() < 1 || !n.graph().has_value(n.input_name(0))) return false;
  const OnnxValue x = n.graph().value(n.input_name(0));
  if (x.swapped || (x.rank() != 3 && x.rank() != 2)) return false;
  GroupWalk w(n.graph(), first);
  if (!w.reduces_last_axis(first, x.rank())) return false;
  auto sub = w.sole(w.out(first), "Sub");
  if (!sub || w.in(*sub, 0) != n.input_name(0) || w.in(*sub, 1) != w.out(first)) return false;
  const auto& d_readers = w.readers(w.out(*sub));
  if (d_readers.size() != 2 || w.is_graph_output(w.out(*sub))) return false;
  int pow = d_readers[0], div = d_readers[1];
  if (w.node(pow).op_type() != "Pow") std::swap(pow, div);
  if (w.node(pow).op_type() != "Pow" || w.node(div).op_type() != "Div") return false;
  if (w.scalar(w.in(pow, 1)) != 2.0 || w.in(div, 0) != w.out(*sub)) return false;
  w.take(pow);
  auto mean2 = w.sole(w.out(pow), "ReduceMean");
  if (!mean2 || !w.reduces_last_axis(*mean2, x.rank())) return false;
  auto add_eps = w.sole(w.out(*mean2), "Add");
  if (!add_eps) return false;
  const auto eps = w.scalar(w.other_input(*add_eps, w.out(*mean2)));
  if (!eps) return false;
  auto sqrt = w.sole(w.out(*add_eps), "Sqrt");
  if (!sqrt || w.in(div, 1) != w.out(*sqrt)) return false;
  w.take(div);
  std::string result = w.out(div);
  const std::int64_t c = x.dims.back();
  std::string gamma, beta;
  if (auto mul = w.sole(result, "Mul")) {
    gamma = w.other_input(*mul, result);
    if (!w.is_constant(gamma) || w.dims(gamma) != Dims{c}) return false;
    result = w.out(*mul);
    if (auto add = w.sole(result, "Add")) {
      beta = w.other_input(*add, result);
      if (!w.is_constant(beta) || w.dims(beta) != Dims{c}) return false;
      result = w.out(*add);
    }
  }
  LayerNormSettings s;
  s.epsilon = static_cast<float>(*eps);
  s.scale = !gamma.empty();
  s.center = !beta.empty();
  std::map<std::string, OnnxWeightRecipe> recipes;
  if (s.scale) recipes["gamma"] = copied_constant(gamma, n.name());
  if (s.center) recipes["beta"] = copied_constant(beta, n.name());
  w.absorb_all();
  auto layer = std::make_unique<LayerNormalization>(group_name(n), s);
  OnnxValue y = n.add_layer(std::move(layer), {x}, x.rank(), std::move(recipes));
  n.graph().set_value(result, y);
  return true;
}

// The group walked by `w`, from node n's first input to node `last`'s output, as one activation.
bool become_activation(OnnxNode& n, GroupWalk& w, int last, ActivationKind kind) {
  const OnnxValue x = n.activation(0);
  w.absorb_all();
  Activation a;
  a.kind = kind;
  auto layer = std::make_unique<ActivationLayer>(group_name(n), "Activation", a);
  n.graph().set_value(w.out(last), n.add_layer(std::move(layer), {x}, x.rank()));
  return true;
}

// ---- GELU -----------------------------------------------------------------------------------

// Div(x, sqrt 2) -> Erf -> Add(1) -> Mul(x, .) -> Mul(0.5): x * (1 + erf(x / sqrt 2)) / 2.
bool fuse_gelu(OnnxNode& n, int first) {
  if (n.inputs() != 2 || !n.graph().has_value(n.input_name(0))) return false;
  GroupWalk w(n.graph(), first);
  const auto root2 = w.scalar(n.input_name(1));
  if (!root2 || std::fabs(*root2 - std::sqrt(2.0)) > 1e-5) return false;
  auto erf = w.sole(w.out(first), "Erf");
  if (!erf) return false;
  auto add = w.sole(w.out(*erf), "Add");
  if (!add || w.scalar(w.other_input(*add, w.out(*erf))) != 1.0) return false;
  auto mul = w.sole(w.out(*add), "Mul");
  if (!mul || w.other_input(*mul, w.out(*add)) != n.input_name(0)) return false;
  auto half = w.sole(w.out(*mul), "Mul");
  if (!half || w.scalar(w.other_input(*half, w.out(*mul))) != 0.5) return false;
  return become_activation(n, w, *half, ActivationKind::gelu);
}

// ---- SiLU -----------------------------------------------------------------------------------

// Sigmoid(x) -> Mul(x, .): x * sigmoid(x), as PyTorch exports nn.SiLU (EfficientNet). As one
// swish layer it fuses into the convolution before it, computed while the sums are in cache.
bool fuse_silu(OnnxNode& n, int first) {
  if (n.inputs() != 1 || !n.graph().has_value(n.input_name(0))) return false;
  GroupWalk w(n.graph(), first);
  auto mul = w.sole(w.out(first), "Mul");
  if (!mul || w.other_input(*mul, w.out(first)) != n.input_name(0)) return false;
  return become_activation(n, w, *mul, ActivationKind::swish);
}

// ---- Attention ------------------------------------------------------------------------------

// Columns [begin, end) of a row-major (rows, cols) constant, row-major: Keras' (D, heads, dim)
// kernel of one of Q, K and V from PyTorch's in-projection (D, 3D).
OnnxWeightRecipe columns(std::string tensor, std::string node, std::int64_t rows, std::int64_t cols,
                         std::int64_t begin, std::int64_t end) {
  return [=](const OnnxConstants& c, const WeightSlice&) {
    const std::vector<float> m = c.floats(tensor, node);
    std::vector<float> out;
    out.reserve(static_cast<std::size_t>(rows * (end - begin)));
    for (std::int64_t r = 0; r < rows; ++r)
      out.insert(out.end(), m.begin() + r * cols + begin, m.begin() + r * cols + end);
    return out;
  };
}

OnnxWeightRecipe transposed(std::string tensor, std::string node, std::int64_t rows, std::int64_t cols) {
  return [=](const OnnxConstants& c, const WeightSlice&) {
    const std::vector<float> m = c.floats(tensor, node);
    std::vector<float> out(m.size());
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t k = 0; k < cols; ++k) out[k * rows + r] = m[r * cols + k];
    return out;
  };
}

// PyTorch's nn.MultiheadAttention (batch_first, self-attention, no mask) as torch.onnx writes it:
//   Transpose[1,0,2](x) -> MatMul(W_in (D, 3D)) -> Add(b_in) -> three Slices of D (q, k, v)
//   q: Reshape(L, H, dh) -> Transpose[1,0,2] -> Div(sqrt(dh))      (H, L, dh)
//   k: Reshape(L, H, dh) -> Transpose[1,2,0]                       (H, dh, L)
//   v: Reshape(L, H, dh) -> Transpose[1,0,2]                       (H, L, dh)
//   MatMul(q, k) -> Softmax(-1) -> MatMul(., v) -> Transpose[1,0,2] -> Reshape(L, D)
//   -> Gemm(W_out, b_out) -> Reshape(L, 1, D) -> Transpose[1,0,2]  (1, L, D)
// The slices' bounds come from Shape arithmetic on the projection, folded here; so do the
// reshapes' targets where the batch axis was exported as dynamic (dynamic_axes), which reads
// the shapes of x, the slices and the output projection.
bool fuse_attention(OnnxNode& n, int first) {
  if (n.inputs() != 1 || !n.graph().has_value(n.input_name(0))) return false;
  const OnnxValue x = n.graph().value(n.input_name(0));
  GroupWalk w(n.graph(), first);
  if (x.swapped || x.rank() != 3 || x.dims[0] != 1 || w.ints_attr(first, "perm") != Dims{1, 0, 2}) return false;
  const std::int64_t l = x.dims[1], d = x.dims[2];
  auto in_proj = w.sole(w.out(first), "MatMul", /*shapes_ok=*/true);
  if (!in_proj) return false;
  const std::string w_in = w.in(*in_proj, 1);
  if (w.in(*in_proj, 0) != w.out(first) || !w.is_constant(w_in) || w.dims(w_in) != Dims{d, 3 * d})
    return false;

  // From here on this is attention: a node that differs is an error.
  const std::string& source = n.source();
  auto differs = [&](int at, const auto&... what) {
    const auto& p = w.node(at);
    fail(source, ": node '", p.name().empty() ? w.out(at) : p.name(), "' (", p.op_type(),
         "): in an attention block (nn.MultiheadAttention as PyTorch exports it) that Chorus does not recognise: ",
         what...);
  };
  auto next = [&](int at, const char* op, bool shapes_ok = false, const char* hint = "") {
    auto c = w.sole(w.out(at), op, shapes_ok);
    if (!c) {
      std::string found;
      for (int r : w.readers(w.out(at)))
        found += cat(found.empty() ? "" : ", ", w.node(r).op_type(), " '", w.node(r).name(), "'");
      differs(at, "expected its output to be read by one ", op, " only, found ", found.empty() ? "none" : found, hint);
    }
    return *c;
  };
  auto perm_is = [&](int at, Dims perm) {
    if (w.ints_attr(at, "perm") != perm) differs(at, "expected perm ", dims_str(perm));
  };
  // The shapes of the group's values that Shape nodes read (filled in as they are known).
  std::map<std::string, Dims> dims{{w.out(first), {l, 1, d}}};
  // Folds the shape arithmetic behind the values `wanted` (node `at`'s inputs) to constants,
  // from the shapes in `dims`, and takes its nodes into the group.
  const auto fold = [&](int at, const std::vector<std::string>& wanted) {
    std::vector<int> arithmetic;
    std::vector<std::string> pending = wanted;
    while (!pending.empty()) {
      const std::string v = pending.back();
      pending.pop_back();
      // Computed values outside the group end the walk (their Shape then fails to fold, below).
      if (v.empty() || w.is_constant(v) || dims.count(v) || n.graph().has_value(v)) continue;
      const int p = n.graph().producer(v);
      if (p < 0) differs(at, "its input '", v, "' is computed by no node");
      if (std::find(arithmetic.begin(), arithmetic.end(), p) != arithmetic.end()) continue;
      arithmetic.push_back(p);
      for (const auto& in : w.node(p).input()) pending.push_back(in);
    }
    std::sort(arithmetic.begin(), arithmetic.end());
    for (int p : arithmetic) {
      if (!n.graph().fold(p, dims) && !w.is_constant(w.out(p)))
        differs(p, "expected shape arithmetic that folds to a constant");
      if (std::find(w.nodes().begin(), w.nodes().end(), p) == w.nodes().end()) w.take(p);
    }
  };
  // A reshape's target: a constant, or shape arithmetic folded from `dims`.
  auto target_of = [&](int at) {
    const std::string& target = w.in(at, 1);
    if (!w.is_constant(target)) fold(at, {target});
    return w.is_constant(target) ? n.graph().constants().ints(target, n.name()) : Dims{};
  };
  auto reshape_to = [&](int at, Dims shape) {
    if (target_of(at) != shape) differs(at, "expected a reshape to ", dims_str(shape));
  };

  const int add_in = next(*in_proj, "Add");
  const std::string b_in = w.other_input(add_in, w.out(*in_proj));
  if (!w.is_constant(b_in) || w.dims(b_in) != Dims{3 * d}) differs(add_in, "expected a bias of ", 3 * d, " values");
  // The three slices, and the Shape arithmetic that gives their bounds.
  std::vector<int> slices;
  dims[w.out(add_in)] = {l, 1, 3 * d};
  for (int r : w.readers(w.out(add_in))) {
    const std::string& op = w.node(r).op_type();
    if (op == "Slice") slices.push_back(r);
    else if (op != "Shape") differs(r, "expected Slice or Shape to read the projection");
    w.take(r);
  }
  if (slices.size() != 3) differs(add_in, "expected three slices (q, k, v) of the projection, found ", slices.size());
  for (int sl : slices) {
    std::vector<std::string> bounds;
    for (int i = 1; i < w.node(sl).input_size(); ++i) bounds.push_back(w.node(sl).input(i));
    fold(sl, bounds);
  }
  int q = -1, k = -1, v = -1;
  for (int sl : slices) {
    const auto& p = w.node(sl);
    auto ints = [&](int i) { return n.graph().constants().ints(p.input(i), p.name()); };
    if (p.input_size() < 4 || ints(3).size() != 1 || (ints(3)[0] != -1 && ints(3)[0] != 2) ||
        (p.input_size() > 4 && !p.input(4).empty() && ints(4) != Dims{1}))
      differs(sl, "expected a slice of the last axis");
    if (ints(1).size() != 1 || ints(2).size() != 1) differs(sl, "expected one start and one end");
    const std::int64_t start = ints(1)[0], end = ints(2)[0];
    if (end != start + d) differs(sl, "expected a slice of ", d, " features, found [", start, ", ", end, ")");
    if (start % d != 0 || start < 0 || start > 2 * d)
      differs(sl, "expected a slice starting at 0, ", d, " or ", 2 * d);
    int& part = start == 0 ? q : start == d ? k : v;
    if (part >= 0) differs(sl, "two slices start at ", start);
    part = sl;
  }
  if (q < 0 || k < 0 || v < 0) differs(add_in, "expected slices for q, k and v");

  // The head split: (L, D) to (L, H, dh), heads first.
  std::int64_t heads = 0;
  auto split_heads = [&](int slice) {
    dims[w.out(slice)] = {l, 1, d};
    const int r = next(slice, "Reshape", /*shapes_ok=*/true);
    const Dims shape = target_of(r);
    if (shape.size() != 3 || shape[0] != l || shape[1] < 1 || shape[1] * shape[2] != d)
      differs(r, "expected a reshape to (", l, ", heads, ", d, " / heads)");
    if (heads && shape[1] != heads) differs(r, "q, k and v have different head counts");
    heads = shape[1];
    return next(r, "Transpose");
  };
  const int q_t = split_heads(q), k_t = split_heads(k), v_t = split_heads(v);
  perm_is(q_t, {1, 0, 2});
  perm_is(k_t, {1, 2, 0});
  perm_is(v_t, {1, 0, 2});
  const std::int64_t dh = d / heads;
  int q_scaled = -1;
  float scale = 1.0f;
  if (auto div = w.sole(w.out(q_t), "Div")) {
    const auto c = w.scalar(w.in(*div, 1));
    if (!c || *c == 0.0) differs(*div, "expected q divided by a constant");
    q_scaled = *div, scale = static_cast<float>(1.0 / *c);
  } else if (auto mul = w.sole(w.out(q_t), "Mul")) {
    const auto c = w.scalar(w.other_input(*mul, w.out(q_t)));
    if (!c) differs(*mul, "expected q times a constant");
    q_scaled = *mul, scale = static_cast<float>(*c);
  } else {
    differs(q_t, "expected q scaled by a constant");
  }
  const int scores = next(q_scaled, "MatMul");
  if (w.in(scores, 1) != w.out(k_t) || w.sole(w.out(k_t), "MatMul") != scores)
    differs(scores, "expected q times the transposed k");
  const int softmax =
      next(scores, "Softmax", false, " (attention masks and other changes to the scores are not supported)");
  if (const auto axis = w.int_attr(softmax, "axis", -1); (axis != -1 && axis != 2) || n.opset() < 13)
    differs(softmax, "expected a softmax over the last axis (opset 13 or later)");
  const int context = next(softmax, "MatMul");
  if (w.in(context, 1) != w.out(v_t) || w.sole(w.out(v_t), "MatMul") != context)
    differs(context, "expected the attention times v");
  const int merge = next(context, "Transpose");
  perm_is(merge, {1, 0, 2});
  const int flat = next(merge, "Reshape");
  reshape_to(flat, {l, d});
  const int out_proj = next(flat, "Gemm");
  const auto& g = w.node(out_proj);
  const bool trans_b = w.int_attr(out_proj, "transB", 0) != 0;
  std::int64_t d_out = 0;
  if (w.int_attr(out_proj, "transA", 0) != 0 || g.input_size() != 3 || !w.is_constant(g.input(1)) ||
      !w.is_constant(g.input(2)) || w.dims(g.input(1)).size() != 2)
    differs(out_proj, "expected the output projection with constant weight and bias");
  const Dims bd = w.dims(g.input(1));
  d_out = trans_b ? bd[0] : bd[1];
  if ((trans_b ? bd[1] : bd[0]) != d || w.dims(g.input(2)) != Dims{d_out})
    differs(out_proj, "expected a weight of ", d, " inputs and a bias of its outputs");
  for (const char* a : {"alpha", "beta"})
    for (const auto& attr : g.attribute())
      if (attr.name() == a && attr.f() != 1.0f) differs(out_proj, "expected ", a, " = 1");
  dims[w.out(out_proj)] = {l, d_out};
  const int unflat = next(out_proj, "Reshape", /*shapes_ok=*/true);
  reshape_to(unflat, {l, 1, d_out});
  const int back = next(unflat, "Transpose");
  perm_is(back, {1, 0, 2});

  AttentionSettings s;
  s.heads = static_cast<int>(heads);
  s.key_dim = s.value_dim = static_cast<int>(dh);
  s.output_dim = static_cast<int>(d_out);
  s.scale = scale;
  std::map<std::string, OnnxWeightRecipe> recipes;
  const char* parts[3] = {"query", "key", "value"};
  for (int p = 0; p < 3; ++p) {
    recipes[cat(parts[p], "/kernel")] = columns(w_in, n.name(), d, 3 * d, p * d, (p + 1) * d);
    recipes[cat(parts[p], "/bias")] = columns(b_in, n.name(), 1, 3 * d, p * d, (p + 1) * d);
  }
  recipes["attention_output/kernel"] =
      trans_b ? transposed(g.input(1), n.name(), d_out, d) : copied_constant(g.input(1), n.name());
  recipes["attention_output/bias"] = copied_constant(g.input(2), n.name());
  w.absorb_all();
  auto layer = std::make_unique<MultiHeadAttention>(group_name(n), s);
  n.graph().set_value(w.out(back), n.add_layer(std::move(layer), {x}, 3, std::move(recipes)));
  return true;
}

}  // namespace

bool fuse_onnx_nodes(OnnxNode& node, int index) {
  if (node.op() == "ReduceMean") return fuse_layer_norm(node, index);
  if (node.op() == "Div") return fuse_gelu(node, index);
  if (node.op() == "Sigmoid") return fuse_silu(node, index);
  if (node.op() == "Transpose") return fuse_attention(node, index);
  return false;
}

}  // namespace chorus::io
