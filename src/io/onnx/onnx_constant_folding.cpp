// Folding of the small computations exporters emit on constants, so that what they compute (a
// Reshape's target, a Pad's pads) is a constant like any initializer. PyTorch writes
// `x.view(x.size(0), -1)` with a dynamic batch as Shape -> Gather -> Unsqueeze -> Concat ->
// Reshape, and F.pad as ConstantOfShape -> Concat -> Reshape -> Slice -> Transpose -> Cast.
#include <algorithm>
#include <climits>
#include <cstring>

#include "core/error.h"
#include "io/onnx/onnx_proto.h"

namespace chorus::io {

namespace {

constexpr std::int64_t kMaxFolded = 1 << 24;  // elements: folded values are shapes, not weights

// A folded value: dims, whether it holds floats, and its values row-major.
struct Folded {
  std::vector<std::int64_t> dims;
  bool is_float = false;
  std::vector<double> v;
};

std::int64_t count_of(const std::vector<std::int64_t>& dims) {
  std::int64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

std::vector<std::int64_t> strides_of(const std::vector<std::int64_t>& dims) {
  std::vector<std::int64_t> s(dims.size(), 1);
  for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

const onnx::AttributeProto* attr(const onnx::NodeProto& node, const char* name) {
  for (const auto& a : node.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

std::int64_t attr_int(const onnx::NodeProto& node, const char* name, std::int64_t fallback) {
  const auto* a = attr(node, name);
  return a ? a->i() : fallback;
}

}  // namespace

std::vector<double> OnnxConstants::numbers(const std::string& name, const std::string& node, bool* is_float) const {
  const int type = tensors_.at(name)->data_type();
  *is_float = type == onnx::TensorProto::FLOAT || type == onnx::TensorProto::DOUBLE;
  if (*is_float) {
    auto f = floats(name, node);
    return {f.begin(), f.end()};
  }
  auto i = ints(name, node);
  return {i.begin(), i.end()};
}

void OnnxConstants::add_folded(const std::string& name, const std::vector<std::int64_t>& dims, bool is_float,
                               const std::vector<double>& values) {
  auto t = std::make_unique<onnx::TensorProto>();
  t->set_name(name);
  for (auto d : dims) t->add_dims(d);
  t->set_data_type(is_float ? onnx::TensorProto::FLOAT : onnx::TensorProto::INT64);
  for (double v : values) {
    if (is_float)
      t->add_float_data(static_cast<float>(v));
    else
      t->add_int64_data(static_cast<std::int64_t>(v));
  }
  tensors_[name] = t.get();
  owned_.push_back(std::move(t));
}

bool OnnxConstants::fold(const onnx::NodeProto& node, const OnnxDimsLookup& computed) {
  const std::string& op = node.op_type();
  if (node.output_size() < 1 || node.output(0).empty() || has(node.output(0))) return false;
  if (!node.domain().empty() && node.domain() != "ai.onnx") return false;
  static const char* const kFoldable[] = {"Shape",   "Gather", "Unsqueeze", "Squeeze", "Concat",
                                          "Reshape", "Slice",  "Transpose", "Cast",    "ConstantOfShape",
                                          "Add",     "Sub",    "Mul",       "Div",       "Equal",
                                          "Where",   "Expand"};
  if (std::find(std::begin(kFoldable), std::end(kFoldable), op) == std::end(kFoldable)) return false;
  const std::string who = node.name().empty() ? node.output(0) : node.name();
  auto bad = [&](const auto&... args) { fail(source_, ": node '", who, "' (", op, "): ", args...); };
  auto present = [&](int i) { return i < node.input_size() && !node.input(i).empty(); };
  auto input = [&](int i) {
    if (!present(i)) bad("input ", i, " is missing");
    Folded f;
    f.dims = dims(node.input(i));
    f.v = numbers(node.input(i), who, &f.is_float);
    return f;
  };
  auto int_list = [&](int i) {
    if (!present(i)) bad("input ", i, " is missing");
    auto v = ints(node.input(i), who);
    return std::vector<std::int64_t>(v.begin(), v.end());
  };
  auto axis_in = [&](std::int64_t axis, std::int64_t rank) {
    if (axis < -rank || axis >= rank) bad("axis ", axis, " is out of range for rank ", rank);
    return axis < 0 ? axis + rank : axis;
  };

  Folded out;
  if (op == "Shape") {
    if (!present(0)) bad("input 0 is missing");
    const std::vector<std::int64_t>* d = has(node.input(0)) ? nullptr : computed(node.input(0));
    std::vector<std::int64_t> shape = has(node.input(0)) ? dims(node.input(0)) : (d ? *d : std::vector<std::int64_t>{});
    if (!has(node.input(0)) && !d) return false;
    const auto rank = static_cast<std::int64_t>(shape.size());
    auto clamp = [&](std::int64_t i) { return std::clamp(i < 0 ? i + rank : i, std::int64_t{0}, rank); };
    const std::int64_t start = clamp(attr_int(node, "start", 0)), end = clamp(attr_int(node, "end", rank));
    out.dims = {std::max<std::int64_t>(end - start, 0)};
    for (std::int64_t i = start; i < end; ++i) out.v.push_back(static_cast<double>(shape[i]));
  } else {
    for (int i = 0; i < node.input_size(); ++i)
      if (!node.input(i).empty() && !has(node.input(i))) return false;  // computed inputs: not a constant
    if (op == "Gather") {
      Folded data = input(0), idx = input(1);
      if (data.dims.empty()) bad("gathers from a scalar");
      const std::int64_t axis = axis_in(attr_int(node, "axis", 0), data.dims.size()), n = data.dims[axis];
      const auto s = strides_of(data.dims);
      const std::int64_t outer = count_of({data.dims.begin(), data.dims.begin() + axis}), inner = s[axis];
      out.dims.assign(data.dims.begin(), data.dims.begin() + axis);
      out.dims.insert(out.dims.end(), idx.dims.begin(), idx.dims.end());
      out.dims.insert(out.dims.end(), data.dims.begin() + axis + 1, data.dims.end());
      out.is_float = data.is_float;
      for (std::int64_t o = 0; o < outer; ++o)
        for (double k : idx.v) {
          auto j = static_cast<std::int64_t>(k);
          if (j < -n || j >= n) bad("index ", j, " is out of range for dimension ", n);
          if (j < 0) j += n;
          const auto* from = data.v.data() + (o * n + j) * inner;
          out.v.insert(out.v.end(), from, from + inner);
        }
    } else if (op == "Unsqueeze" || op == "Squeeze") {
      out = input(0);
      std::vector<std::int64_t> axes;
      if (attr(node, "axes"))
        axes.assign(attr(node, "axes")->ints().begin(), attr(node, "axes")->ints().end());
      else if (present(1))
        axes = int_list(1);
      if (op == "Unsqueeze") {
        const auto rank = static_cast<std::int64_t>(out.dims.size() + axes.size());
        for (auto& a : axes) a = axis_in(a, rank);
        std::sort(axes.begin(), axes.end());
        for (auto a : axes) out.dims.insert(out.dims.begin() + std::min<std::int64_t>(a, out.dims.size()), 1);
      } else {
        const auto rank = static_cast<std::int64_t>(out.dims.size());
        std::vector<std::int64_t> kept;
        for (std::int64_t i = 0; i < rank; ++i) {
          bool drop = axes.empty() ? out.dims[i] == 1 : false;
          for (auto a : axes) drop = drop || axis_in(a, rank) == i;
          if (drop && out.dims[i] != 1) bad("squeezes axis ", i, " of size ", out.dims[i]);
          if (!drop) kept.push_back(out.dims[i]);
        }
        out.dims = kept;
      }
    } else if (op == "Concat") {
      if (node.input_size() < 1) bad("has no inputs");
      Folded first = input(0);
      const std::int64_t axis = axis_in(attr_int(node, "axis", 0), first.dims.size());
      std::vector<Folded> parts;
      out.dims = first.dims;
      out.dims[axis] = 0;
      for (int i = 0; i < node.input_size(); ++i) {
        parts.push_back(input(i));
        const Folded& p = parts.back();
        for (std::size_t a = 0; a < p.dims.size() && p.dims.size() == first.dims.size(); ++a)
          if (static_cast<std::int64_t>(a) != axis && p.dims[a] != first.dims[a]) bad("inputs differ off the axis");
        if (p.dims.size() != first.dims.size()) bad("inputs differ in rank");
        out.dims[axis] += p.dims[axis];
        out.is_float = out.is_float || p.is_float;
      }
      const std::int64_t outer = count_of({first.dims.begin(), first.dims.begin() + axis});
      for (std::int64_t o = 0; o < outer; ++o)
        for (const auto& p : parts) {
          const std::int64_t width = p.dims[axis] * strides_of(p.dims)[axis];
          out.v.insert(out.v.end(), p.v.begin() + o * width, p.v.begin() + (o + 1) * width);
        }
    } else if (op == "Reshape") {
      out = input(0);
      auto target = int_list(1);
      std::int64_t known = 1;
      int unknown = -1;
      for (std::size_t i = 0; i < target.size(); ++i) {
        if (target[i] == 0 && attr_int(node, "allowzero", 0) == 0) {
          if (i >= out.dims.size()) bad("shape copies a dimension the input lacks");
          target[i] = out.dims[i];
        }
        if (target[i] == -1 && unknown < 0)
          unknown = static_cast<int>(i);
        else if (target[i] < 0)
          bad("shape holds ", target[i]);
        else
          known *= target[i];
      }
      const std::int64_t total = count_of(out.dims);
      if (unknown >= 0 && known > 0 && total % known == 0) target[unknown] = total / known;
      if (count_of(target) != total) bad("cannot reshape ", total, " values to the shape given");
      out.dims = target;
    } else if (op == "Transpose" || op == "Slice") {
      Folded in = input(0);
      const auto rank = static_cast<std::int64_t>(in.dims.size());
      // Output element k reads input offset sum(index_a * step_a * stride_a) + base.
      std::vector<std::int64_t> in_strides = strides_of(in.dims), steps(rank, 1), starts(rank, 0), map(rank);
      out.dims = in.dims;
      for (std::int64_t a = 0; a < rank; ++a) map[a] = a;
      if (op == "Transpose") {
        std::vector<std::int64_t> perm;
        if (attr(node, "perm"))
          perm.assign(attr(node, "perm")->ints().begin(), attr(node, "perm")->ints().end());
        else
          for (std::int64_t a = rank - 1; a >= 0; --a) perm.push_back(a);
        std::vector<std::int64_t> sorted = perm;
        std::sort(sorted.begin(), sorted.end());
        for (std::int64_t a = 0; a < rank; ++a)
          if (static_cast<std::int64_t>(sorted.size()) != rank || sorted[a] != a) bad("perm is not a permutation");
        for (std::int64_t a = 0; a < rank; ++a) out.dims[a] = in.dims[perm[a]], map[a] = perm[a];
      } else {
        std::vector<std::int64_t> s, e, axes, st;
        if (node.input_size() > 1) {
          s = int_list(1), e = int_list(2);
          if (present(3)) axes = int_list(3);
          if (present(4)) st = int_list(4);
        } else {
          const auto* sa = attr(node, "starts");
          const auto* ea = attr(node, "ends");
          if (!sa || !ea) bad("starts or ends is missing");
          s.assign(sa->ints().begin(), sa->ints().end());
          e.assign(ea->ints().begin(), ea->ints().end());
          if (const auto* aa = attr(node, "axes")) axes.assign(aa->ints().begin(), aa->ints().end());
        }
        if (axes.empty())
          for (std::size_t i = 0; i < s.size(); ++i) axes.push_back(static_cast<std::int64_t>(i));
        if (st.empty()) st.assign(s.size(), 1);
        if (e.size() != s.size() || axes.size() != s.size() || st.size() != s.size())
          bad("starts, ends, axes, steps differ in length");
        for (std::size_t i = 0; i < s.size(); ++i) {
          const std::int64_t a = axis_in(axes[i], rank), d = in.dims[a], step = st[i];
          if (step == 0) bad("step 0");
          std::int64_t b = s[i] < 0 ? s[i] + d : s[i], f = e[i] < 0 ? e[i] + d : e[i];
          if (step > 0) {
            b = std::clamp<std::int64_t>(b, 0, d), f = std::clamp<std::int64_t>(f, 0, d);
            out.dims[a] = f > b ? (f - b + step - 1) / step : 0;
          } else {
            b = std::clamp<std::int64_t>(b, 0, d - 1), f = std::clamp<std::int64_t>(f, -1, d - 1);
            out.dims[a] = b > f ? (b - f - step - 1) / -step : 0;
          }
          starts[a] = b, steps[a] = step;
        }
      }
      const std::int64_t n = count_of(out.dims);
      if (n > kMaxFolded) bad(n, " values are too many to fold");
      out.is_float = in.is_float;
      std::vector<std::int64_t> index(rank, 0);
      for (std::int64_t k = 0; k < n; ++k) {
        std::int64_t offset = 0;
        for (std::int64_t a = 0; a < rank; ++a)
          offset += (starts[map[a]] + index[a] * steps[map[a]]) * in_strides[map[a]];
        out.v.push_back(in.v.at(offset));
        for (std::int64_t a = rank - 1; a >= 0 && ++index[a] == out.dims[a]; --a) index[a] = 0;
      }
    } else if (op == "Cast") {
      out = input(0);
      const std::int64_t to = attr_int(node, "to", 0);
      if (to == onnx::TensorProto::FLOAT || to == onnx::TensorProto::DOUBLE) {
        out.is_float = true;
      } else if (to == onnx::TensorProto::INT64 || to == onnx::TensorProto::INT32) {
        out.is_float = false;
        for (double& x : out.v) x = static_cast<double>(static_cast<std::int64_t>(x));
      } else {
        return false;
      }
    } else if (op == "ConstantOfShape") {
      out.dims = int_list(0);
      for (auto d : out.dims)
        if (d < 0) bad("shape holds ", d);
      if (count_of(out.dims) > kMaxFolded) bad(count_of(out.dims), " values are too many to fold");
      double value = 0;
      out.is_float = true;
      if (const auto* a = attr(node, "value")) {
        const auto& t = a->t();
        out.is_float = t.data_type() == onnx::TensorProto::FLOAT || t.data_type() == onnx::TensorProto::DOUBLE;
        if (t.float_data_size())
          value = t.float_data(0);
        else if (t.int64_data_size())
          value = static_cast<double>(t.int64_data(0));
        else if (t.int32_data_size())
          value = t.int32_data(0);
        else if (t.data_type() == onnx::TensorProto::FLOAT && t.raw_data().size() >= 4) {
          float f;
          std::memcpy(&f, t.raw_data().data(), 4);
          value = f;
        } else if (t.data_type() == onnx::TensorProto::INT64 && t.raw_data().size() >= 8) {
          std::int64_t i;
          std::memcpy(&i, t.raw_data().data(), 8);
          value = static_cast<double>(i);
        } else if (t.data_type() != onnx::TensorProto::FLOAT && t.data_type() != onnx::TensorProto::INT64) {
          return false;
        }
      }
      out.v.assign(static_cast<std::size_t>(count_of(out.dims)), value);
    } else if (op == "Expand") {  // numpy broadcasting of input 0 to the shape in input 1
      Folded in = input(0);
      auto shape = int_list(1);
      const std::size_t rank = std::max(in.dims.size(), shape.size());
      std::vector<std::int64_t> a(rank, 1), b(rank, 1);
      std::copy(in.dims.begin(), in.dims.end(), a.begin() + (rank - in.dims.size()));
      std::copy(shape.begin(), shape.end(), b.begin() + (rank - shape.size()));
      out.dims.resize(rank);
      for (std::size_t i = 0; i < rank; ++i) {
        if (a[i] != b[i] && a[i] != 1 && b[i] != 1) bad("cannot expand ", in.dims.size(), "-D input to the shape given");
        out.dims[i] = a[i] == 1 ? b[i] : a[i];
      }
      const std::int64_t n = count_of(out.dims);
      if (n > kMaxFolded) bad(n, " values are too many to fold");
      out.is_float = in.is_float;
      const auto in_strides = strides_of(a);
      std::vector<std::int64_t> index(rank, 0);
      for (std::int64_t k = 0; k < n; ++k) {
        std::int64_t offset = 0;
        for (std::size_t d = 0; d < rank; ++d) offset += (a[d] == 1 ? 0 : index[d]) * in_strides[d];
        out.v.push_back(in.v.at(offset));
        for (std::int64_t d = static_cast<std::int64_t>(rank) - 1; d >= 0 && ++index[d] == out.dims[d]; --d) index[d] = 0;
      }
    } else if (op == "Where") {  // equal shapes, or single values
      Folded c = input(0), x = input(1), y = input(2);
      std::size_t n = 1;
      for (const Folded* f : {&c, &x, &y})
        if (f->v.size() != 1) {
          if (n != 1 && f->v.size() != n) return false;
          n = f->v.size();
          out.dims = f->dims;
        }
      if (n == 1) out.dims = c.dims.size() >= x.dims.size() ? c.dims : x.dims;
      out.is_float = x.is_float || y.is_float;
      auto at = [&](const Folded& f, std::size_t i) { return f.v[f.v.size() == 1 ? 0 : i]; };
      for (std::size_t i = 0; i < n; ++i) out.v.push_back(at(c, i) != 0 ? at(x, i) : at(y, i));
    } else {  // Add, Sub, Mul, Div, Equal: equal shapes, or one side of a single value
      Folded a = input(0), b = input(1);
      const bool a_one = a.v.size() == 1, b_one = b.v.size() == 1;
      if (a.dims != b.dims && !a_one && !b_one) return false;
      out.dims = a_one && !b_one ? b.dims : a.dims;
      out.is_float = op != "Equal" && (a.is_float || b.is_float);
      const std::size_t n = std::max(a.v.size(), b.v.size());
      for (std::size_t i = 0; i < n; ++i) {
        const double x = a.v[a_one ? 0 : i], y = b.v[b_one ? 0 : i];
        double r = op == "Add" ? x + y : op == "Sub" ? x - y : op == "Mul" ? x * y : op == "Equal" ? (x == y) : 0;
        if (op == "Div") {
          if (!out.is_float && y == 0) bad("integer division by zero");
          r = out.is_float ? x / y : static_cast<double>(static_cast<std::int64_t>(x) / static_cast<std::int64_t>(y));
        }
        out.v.push_back(r);
      }
    }
  }
  if (static_cast<std::int64_t>(out.v.size()) != count_of(out.dims))
    bad("folding went wrong (", out.v.size(), " values)");
  add_folded(node.output(0), out.dims, out.is_float, out.v);
  return true;
}

}  // namespace chorus::io
