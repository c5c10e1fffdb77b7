#include "reference/reference_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace chorus::ref {

std::pair<int, int> tf_axis(int in, int kernel, int stride, int dilation, bool same) {
  int eff = dilation * (kernel - 1) + 1;
  if (!same) return {(in - eff) / stride + 1, 0};
  int out = static_cast<int>(std::ceil(in / static_cast<double>(stride)));
  int total = std::max(0, (out - 1) * stride + eff - in);
  return {out, total / 2};
}

Tensor conv2d(const Tensor& in, const std::vector<float>& kernel, const std::vector<float>& bias, int cout,
              const ConvParams& p) {
  const Shape is = in.shape();
  auto [oh, pt] = tf_axis(is.h, p.kh, p.sh, p.dh, p.same);
  auto [ow, pl] = tf_axis(is.w, p.kw, p.sw, p.dw, p.same);
  const int cin_g = is.c / p.groups, cout_g = cout / p.groups;
  Tensor out(in.frames(), {oh, ow, cout});
  for (int n = 0; n < in.frames(); ++n)
    for (int oy = 0; oy < oh; ++oy)
      for (int ox = 0; ox < ow; ++ox)
        for (int co = 0; co < cout; ++co) {
          const int g = co / cout_g;
          double acc = bias.empty() ? 0.0 : bias[co];
          for (int ky = 0; ky < p.kh; ++ky)
            for (int kx = 0; kx < p.kw; ++kx) {
              int iy = oy * p.sh + ky * p.dh - pt, ix = ox * p.sw + kx * p.dw - pl;
              if (iy < 0 || ix < 0 || iy >= is.h || ix >= is.w) continue;
              for (int ci = 0; ci < cin_g; ++ci) {
                double w = kernel[((static_cast<std::size_t>(ky) * p.kw + kx) * cin_g + ci) * cout + co];
                acc += w * in.at(n, iy, ix, g * cin_g + ci);
              }
            }
          out.at(n, oy, ox, co) = static_cast<float>(acc);
        }
  return out;
}

Tensor depthwise(const Tensor& in, const std::vector<float>& kernel, const std::vector<float>& bias, int mult,
                 const ConvParams& p) {
  const Shape is = in.shape();
  auto [oh, pt] = tf_axis(is.h, p.kh, p.sh, p.dh, p.same);
  auto [ow, pl] = tf_axis(is.w, p.kw, p.sw, p.dw, p.same);
  Tensor out(in.frames(), {oh, ow, is.c * mult});
  for (int n = 0; n < in.frames(); ++n)
    for (int oy = 0; oy < oh; ++oy)
      for (int ox = 0; ox < ow; ++ox)
        for (int ci = 0; ci < is.c; ++ci)
          for (int m = 0; m < mult; ++m) {
            const int co = ci * mult + m;
            double acc = bias.empty() ? 0.0 : bias[co];
            for (int ky = 0; ky < p.kh; ++ky)
              for (int kx = 0; kx < p.kw; ++kx) {
                int iy = oy * p.sh + ky * p.dh - pt, ix = ox * p.sw + kx * p.dw - pl;
                if (iy < 0 || ix < 0 || iy >= is.h || ix >= is.w) continue;
                acc += static_cast<double>(kernel[((static_cast<std::size_t>(ky) * p.kw + kx) * is.c + ci) * mult + m]) *
                       in.at(n, iy, ix, ci);
              }
            out.at(n, oy, ox, co) = static_cast<float>(acc);
          }
  return out;
}

Tensor dense(const Tensor& in, const std::vector<float>& kernel, const std::vector<float>& bias, int units) {
  const Shape is = in.shape();
  Tensor out(in.frames(), {is.h, is.w, units});
  for (int n = 0; n < in.frames(); ++n)
    for (int y = 0; y < is.h; ++y)
      for (int x = 0; x < is.w; ++x)
        for (int u = 0; u < units; ++u) {
          double acc = bias.empty() ? 0.0 : bias[u];
          for (int i = 0; i < is.c; ++i) acc += static_cast<double>(kernel[static_cast<std::size_t>(i) * units + u]) * in.at(n, y, x, i);
          out.at(n, y, x, u) = static_cast<float>(acc);
        }
  return out;
}

Tensor pool2d(const Tensor& in, bool max, int kh, int kw, int sh, int sw, bool same) {
  const Shape is = in.shape();
  auto [oh, pt] = tf_axis(is.h, kh, sh, 1, same);
  auto [ow, pl] = tf_axis(is.w, kw, sw, 1, same);
  Tensor out(in.frames(), {oh, ow, is.c});
  for (int n = 0; n < in.frames(); ++n)
    for (int oy = 0; oy < oh; ++oy)
      for (int ox = 0; ox < ow; ++ox)
        for (int c = 0; c < is.c; ++c) {
          double best = -std::numeric_limits<double>::infinity(), sum = 0;
          int count = 0;
          for (int ky = 0; ky < kh; ++ky)
            for (int kx = 0; kx < kw; ++kx) {
              int iy = oy * sh + ky - pt, ix = ox * sw + kx - pl;
              if (iy < 0 || ix < 0 || iy >= is.h || ix >= is.w) continue;
              double v = in.at(n, iy, ix, c);
              best = std::max(best, v);
              sum += v;
              ++count;
            }
          out.at(n, oy, ox, c) = static_cast<float>(max ? best : sum / count);
        }
  return out;
}

Tensor global_pool(const Tensor& in, bool max) {
  const Shape is = in.shape();
  Tensor out(in.frames(), {1, 1, is.c});
  for (int n = 0; n < in.frames(); ++n)
    for (int c = 0; c < is.c; ++c) {
      double best = -std::numeric_limits<double>::infinity(), sum = 0;
      for (int y = 0; y < is.h; ++y)
        for (int x = 0; x < is.w; ++x) {
          best = std::max(best, static_cast<double>(in.at(n, y, x, c)));
          sum += in.at(n, y, x, c);
        }
      out.at(n, 0, 0, c) = static_cast<float>(max ? best : sum / (is.h * is.w));
    }
  return out;
}

Tensor batch_norm(const Tensor& in, const std::vector<float>& gamma, const std::vector<float>& beta,
                  const std::vector<float>& mean, const std::vector<float>& var, float eps) {
  Tensor out = in;
  const Shape s = in.shape();
  for (int n = 0; n < in.frames(); ++n)
    for (int y = 0; y < s.h; ++y)
      for (int x = 0; x < s.w; ++x)
        for (int c = 0; c < s.c; ++c) {
          double v = (in.at(n, y, x, c) - mean[c]) / std::sqrt(static_cast<double>(var[c]) + eps);
          out.at(n, y, x, c) = static_cast<float>(v * (gamma.empty() ? 1.0 : gamma[c]) + (beta.empty() ? 0.0 : beta[c]));
        }
  return out;
}

Tensor lrn(const Tensor& in, int radius, float bias, float alpha, float beta) {
  Tensor out = in;
  const Shape s = in.shape();
  for (int n = 0; n < in.frames(); ++n)
    for (int y = 0; y < s.h; ++y)
      for (int x = 0; x < s.w; ++x)
        for (int c = 0; c < s.c; ++c) {
          double sum = 0;
          for (int j = std::max(0, c - radius); j <= std::min(s.c - 1, c + radius); ++j)
            sum += static_cast<double>(in.at(n, y, x, j)) * in.at(n, y, x, j);
          out.at(n, y, x, c) = static_cast<float>(in.at(n, y, x, c) / std::pow(bias + alpha * sum, beta));
        }
  return out;
}

Tensor zero_pad(const Tensor& in, int top, int bottom, int left, int right) {
  const Shape s = in.shape();
  Tensor out(in.frames(), {s.h + top + bottom, s.w + left + right, s.c});
  for (int n = 0; n < in.frames(); ++n)
    for (int y = 0; y < s.h; ++y)
      for (int x = 0; x < s.w; ++x)
        for (int c = 0; c < s.c; ++c) out.at(n, y + top, x + left, c) = in.at(n, y, x, c);
  return out;
}

Tensor concat(const std::vector<const Tensor*>& in, int axis) {
  Shape s = in[0]->shape();
  int total = 0;
  for (auto* t : in) total += axis == 0 ? t->shape().h : axis == 1 ? t->shape().w : t->shape().c;
  (axis == 0 ? s.h : axis == 1 ? s.w : s.c) = total;
  Tensor out(in[0]->frames(), s);
  int offset = 0;
  for (auto* t : in) {
    const Shape ts = t->shape();
    for (int n = 0; n < t->frames(); ++n)
      for (int y = 0; y < ts.h; ++y)
        for (int x = 0; x < ts.w; ++x)
          for (int c = 0; c < ts.c; ++c)
            out.at(n, y + (axis == 0 ? offset : 0), x + (axis == 1 ? offset : 0), c + (axis == 2 ? offset : 0)) =
                t->at(n, y, x, c);
    offset += axis == 0 ? ts.h : axis == 1 ? ts.w : ts.c;
  }
  return out;
}

Tensor activation(const Tensor& in, const std::string& name, double alpha) {
  Tensor out = in;
  const int c = in.shape().c;
  if (name == "softmax") {
    for (std::size_t p = 0; p < in.size(); p += c) {
      double mx = -1e300, sum = 0;
      for (int i = 0; i < c; ++i) mx = std::max(mx, static_cast<double>(in.data()[p + i]));
      for (int i = 0; i < c; ++i) sum += std::exp(in.data()[p + i] - mx);
      for (int i = 0; i < c; ++i) out.data()[p + i] = static_cast<float>(std::exp(in.data()[p + i] - mx) / sum);
    }
    return out;
  }
  for (std::size_t i = 0; i < in.size(); ++i) {
    double x = in.data()[i], y;
    if (name == "linear") y = x;
    else if (name == "relu") y = x > 0 ? x : 0;
    else if (name == "relu6") y = std::min(std::max(x, 0.0), 6.0);
    else if (name == "leaky_relu") y = x > 0 ? x : alpha * x;
    else if (name == "elu") y = x > 0 ? x : alpha * (std::exp(x) - 1);
    else if (name == "selu") y = 1.0507009873554805 * (x > 0 ? x : 1.6732632423543772 * (std::exp(x) - 1));
    else if (name == "sigmoid") y = 1 / (1 + std::exp(-x));
    else if (name == "hard_sigmoid") y = std::clamp(alpha * x + 0.5, 0.0, 1.0);
    else if (name == "tanh") y = std::tanh(x);
    else if (name == "swish") y = x / (1 + std::exp(-x));
    else if (name == "gelu") y = 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    else if (name == "softplus") y = std::log(1 + std::exp(x));
    else if (name == "softsign") y = x / (1 + std::fabs(x));
    else if (name == "exponential") y = std::exp(x);
    else throw std::invalid_argument("reference activation " + name);
    out.data()[i] = static_cast<float>(y);
  }
  return out;
}

Tensor layer_norm(const Tensor& in, const std::vector<float>& gamma, const std::vector<float>& beta, double eps) {
  Tensor out(in.frames(), in.shape());
  const int c = in.shape().c;
  for (std::size_t p = 0; p < in.size(); p += c) {
    double mean = 0, var = 0;
    for (int i = 0; i < c; ++i) mean += in.data()[p + i];
    mean /= c;
    for (int i = 0; i < c; ++i) var += (in.data()[p + i] - mean) * (in.data()[p + i] - mean);
    var /= c;
    for (int i = 0; i < c; ++i)
      out.data()[p + i] = static_cast<float>((in.data()[p + i] - mean) / std::sqrt(var + eps) * gamma[i] + beta[i]);
  }
  return out;
}

Tensor attention(const Tensor& query, const Tensor& value, const Tensor& key, const AttentionWeights& w, int heads,
                 int dk, int dv, int dout) {
  const int d = query.shape().c, l = query.shape().h * query.shape().w, s = value.shape().h * value.shape().w;
  Tensor out(query.frames(), {query.shape().h, query.shape().w, dout});
  // x (positions x D) times kernel (D, H, dim) plus bias: (positions, H, dim).
  auto project = [&](const float* x, int positions, const std::vector<float>& k, const std::vector<float>& b,
                     int dim) {
    std::vector<double> r(static_cast<std::size_t>(positions) * heads * dim);
    for (int p = 0; p < positions; ++p)
      for (int j = 0; j < heads * dim; ++j) {
        double acc = b.empty() ? 0.0 : b[j];
        for (int i = 0; i < d; ++i) acc += static_cast<double>(x[p * d + i]) * k[static_cast<std::size_t>(i) * heads * dim + j];
        r[static_cast<std::size_t>(p) * heads * dim + j] = acc;
      }
    return r;
  };
  for (int n = 0; n < query.frames(); ++n) {
    auto q = project(query.frame(n), l, w.wq, w.bq, dk);
    auto k = project(key.frame(n), s, w.wk, w.bk, dk);
    auto v = project(value.frame(n), s, w.wv, w.bv, dv);
    std::vector<double> ctx(static_cast<std::size_t>(l) * heads * dv, 0.0);
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < l; ++i) {
        std::vector<double> score(s);
        double top = -1e300, sum = 0;
        for (int j = 0; j < s; ++j) {
          double acc = 0;
          for (int c = 0; c < dk; ++c) acc += q[(i * heads + h) * dk + c] * k[(j * heads + h) * dk + c];
          score[j] = acc / std::sqrt(static_cast<double>(dk));
          top = std::max(top, score[j]);
        }
        for (int j = 0; j < s; ++j) sum += score[j] = std::exp(score[j] - top);
        for (int j = 0; j < s; ++j)
          for (int c = 0; c < dv; ++c) ctx[(i * heads + h) * dv + c] += score[j] / sum * v[(j * heads + h) * dv + c];
      }
    for (int i = 0; i < l; ++i)
      for (int o = 0; o < dout; ++o) {
        double acc = w.bo.empty() ? 0.0 : w.bo[o];
        for (int j = 0; j < heads * dv; ++j) acc += ctx[static_cast<std::size_t>(i) * heads * dv + j] * w.wo[static_cast<std::size_t>(j) * dout + o];
        out.frame(n)[static_cast<std::size_t>(i) * dout + o] = static_cast<float>(acc);
      }
  }
  return out;
}

}  // namespace chorus::ref
