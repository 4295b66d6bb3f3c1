// gradcheck (see gradcheck.h): analytical vector-Jacobian products from the engine against
// central finite differences of a fixed-seed random projection of the outputs.
#include "autograd/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/native.h"

namespace rg::autograd {

namespace {

// Row-major multi-index of flat element e of `shape`, as "[1, 2]".
std::string index_str(const Shape& shape, int64_t e) {
  Shape idx(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    idx[static_cast<size_t>(d)] = e % shape[static_cast<size_t>(d)];
    e /= shape[static_cast<size_t>(d)];
  }
  return shape_str(idx);
}

// Pointer to logical (row-major) element e of an f64 CPU tensor with any strides.
double* element_ptr(const Tensor& t, int64_t e) {
  int64_t off = 0;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    off += (e % t.size(d)) * t.stride(d);
    e /= t.size(d);
  }
  return t.data<double>() + off;
}

std::vector<double> values_of(const Tensor& t) { return t.to_vector<double>(); }

struct Checker {
  const GradcheckFn& fn;
  const std::vector<Tensor>& inputs;
  const GradcheckOptions& opts;
  std::vector<size_t> diff_in;       // positions of inputs that require grad
  std::vector<size_t> float_out;     // positions of floating outputs (first run)
  std::vector<Shape> out_shapes;     // of every output (first run)
  // cot[k][j]: cotangent k for floating output float_out[j], flattened
  std::vector<std::vector<std::vector<double>>> cot;

  std::string fail;  // first failure

  bool failed(const std::string& m) {
    if (fail.empty()) fail = "gradcheck: " + m;
    return false;
  }

  std::vector<Tensor> call() const { return fn(inputs); }

  bool check_inputs() {
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& x = inputs[i];
      if (!x.defined() || !x.requires_grad()) continue;
      std::ostringstream who;
      who << "input " << i << " (" << x.describe() << ")";
      if (x.dtype() != DType::f64 || !x.is_cpu()) return failed(who.str() + " requires grad but is not a float64 CPU tensor");
      if (!x.is_leaf()) return failed(who.str() + " requires grad but is not a leaf");
      for (int64_t d = 0; d < x.dim(); ++d) {
        if (x.size(d) > 1 && x.stride(d) == 0) return failed(who.str() + " has overlapping memory (stride 0)");
      }
      diff_in.push_back(i);
    }
    if (diff_in.empty()) return failed("no input requires grad");
    return true;
  }

  // The first run fixes the outputs' number and shapes, and draws the cotangents.
  bool first_run() {
    std::vector<Tensor> outs;
    {
      NoGradGuard ng;
      outs = call();
    }
    if (outs.empty()) return failed("the function returned no outputs");
    for (size_t j = 0; j < outs.size(); ++j) {
      if (!outs[j].defined()) return failed("output " + std::to_string(j) + " is undefined");
      out_shapes.push_back(outs[j].sizes());
      if (outs[j].is_floating_point()) float_out.push_back(j);
    }
    if (float_out.empty()) return failed("the function has no floating point output");
    std::mt19937_64 gen(opts.seed);
    std::uniform_real_distribution<double> unif(-1.0, 1.0);
    cot.resize(static_cast<size_t>(std::max(opts.num_cotangents, 1)));
    for (auto& per_out : cot) {
      for (size_t j : float_out) {
        std::vector<double> v(static_cast<size_t>(outs[j].numel()));
        for (double& x : v) x = unif(gen);
        per_out.push_back(std::move(v));
      }
    }
    // Determinism of the forward.
    std::vector<Tensor> again;
    {
      NoGradGuard ng;
      again = call();
    }
    if (!same_structure(again, "a second evaluation")) return false;
    for (size_t j : float_out) {
      const auto a = values_of(outs[j]), b = values_of(again[j]);
      for (size_t e = 0; e < a.size(); ++e) {
        const bool both_nan = std::isnan(a[e]) && std::isnan(b[e]);
        if (!both_nan && !(std::fabs(a[e] - b[e]) <= opts.nondet_tol)) {
          std::ostringstream os;
          os << "the function is not deterministic: output " << j << " element " << e << " "
             << index_str(out_shapes[j], static_cast<int64_t>(e)) << " was " << a[e] << " then " << b[e];
          return failed(os.str());
        }
      }
    }
    return true;
  }

  bool same_structure(const std::vector<Tensor>& outs, const char* when) {
    if (outs.size() != out_shapes.size()) {
      return failed(std::string("the number of outputs changed on ") + when);
    }
    for (size_t j = 0; j < outs.size(); ++j) {
      if (!outs[j].defined() || outs[j].sizes() != out_shapes[j]) {
        return failed("output " + std::to_string(j) + " changed shape on " + when);
      }
    }
    return true;
  }

  // <cot[k], outs> for every k.
  std::vector<double> project(const std::vector<Tensor>& outs) const {
    std::vector<double> l(cot.size(), 0.0);
    for (size_t jj = 0; jj < float_out.size(); ++jj) {
      const auto vals = values_of(outs[float_out[jj]]);
      for (size_t k = 0; k < cot.size(); ++k) {
        const auto& v = cot[k][jj];
        double s = 0.0;
        for (size_t e = 0; e < vals.size(); ++e) s += v[e] * vals[e];
        l[k] += s;
      }
    }
    return l;
  }

  // Roots (outputs that require grad) and their cotangent tensors for cotangent k.
  void roots_for(const std::vector<Tensor>& outs, size_t k, TensorList* roots, TensorList* grads) const {
    for (size_t jj = 0; jj < float_out.size(); ++jj) {
      const Tensor& o = outs[float_out[jj]];
      if (!o.requires_grad()) continue;
      roots->push_back(o);
      grads->push_back(from_vector<double>(cot[k][jj], o.sizes(), TensorOptions(o.dtype())));
    }
  }

  // analytic[i] (per differentiable input, flattened) for cotangent k, from a fresh graph.
  bool analytic(size_t k, std::vector<std::vector<double>>* out) {
    EnableGradGuard eg;
    std::vector<Tensor> outs = call();
    if (!same_structure(outs, "the analytical run")) return false;
    TensorList roots, grads;
    roots_for(outs, k, &roots, &grads);
    TensorList xs;
    for (size_t i : diff_in) xs.push_back(inputs[i]);
    TensorList gx(xs.size());
    if (!roots.empty()) gx = grad(roots, xs, grads, /*retain_graph=*/false, /*allow_unused=*/true);
    out->clear();
    for (size_t ii = 0; ii < xs.size(); ++ii) {
      const Tensor& x = xs[ii];
      if (!gx[ii].defined()) {
        out->emplace_back(static_cast<size_t>(x.numel()), 0.0);
        continue;
      }
      if (gx[ii].sizes() != x.sizes() || gx[ii].dtype() != x.dtype()) {
        return failed("the gradient of input " + std::to_string(diff_in[ii]) + " is " + gx[ii].describe() +
                      ", expected " + x.describe());
      }
      out->push_back(values_of(gx[ii]));
    }
    return true;
  }

  // backward() accumulates exactly `expected` into the inputs that require grad and nothing
  // into the others; every input's .grad is restored afterwards.
  bool backward_fills_only_requiring(const std::vector<std::vector<double>>& expected) {
    std::vector<std::shared_ptr<TensorImpl>> saved;
    for (const Tensor& x : inputs) saved.push_back(x.defined() ? x.impl()->grad : nullptr);
    for (const Tensor& x : inputs) {
      if (x.defined()) x.impl()->grad.reset();
    }
    bool ok = true;
    std::string err;
    EnableGradGuard eg;
    try {
      std::vector<Tensor> outs = call();
      TensorList roots, grads;
      roots_for(outs, 0, &roots, &grads);
      if (!roots.empty()) backward(roots, grads, false);
      for (size_t i = 0; i < inputs.size() && ok; ++i) {
        const Tensor& x = inputs[i];
        if (!x.defined()) continue;
        const Tensor g = x.grad();
        if (!x.requires_grad()) {
          if (g.defined()) {
            ok = false;
            err = "input " + std::to_string(i) + " does not require grad but got a .grad from backward()";
          }
          continue;
        }
        const size_t ii = static_cast<size_t>(std::find(diff_in.begin(), diff_in.end(), i) - diff_in.begin());
        const std::vector<double> got = g.defined() ? values_of(g) : std::vector<double>(expected[ii].size(), 0.0);
        for (size_t e = 0; e < got.size() && ok; ++e) {
          if (!(std::fabs(got[e] - expected[ii][e]) <= opts.nondet_tol)) {
            std::ostringstream os;
            os << "backward() gave input " << i << " element " << e << " the gradient " << got[e]
               << " but autograd::grad() gave " << expected[ii][e];
            ok = false;
            err = os.str();
          }
        }
      }
    } catch (...) {
      for (size_t i = 0; i < inputs.size(); ++i) {
        if (inputs[i].defined()) inputs[i].impl()->grad = saved[i];
      }
      throw;
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].defined()) inputs[i].impl()->grad = saved[i];
    }
    return ok || failed(err);
  }

  // numeric[k][ii][e]
  bool numeric(std::vector<std::vector<std::vector<double>>>* num) {
    NoGradGuard ng;
    num->assign(cot.size(), std::vector<std::vector<double>>(diff_in.size()));
    for (size_t ii = 0; ii < diff_in.size(); ++ii) {
      const Tensor& x = inputs[diff_in[ii]];
      for (auto& per_k : *num) per_k[ii].resize(static_cast<size_t>(x.numel()));
      for (int64_t e = 0; e < x.numel(); ++e) {
        double* p = element_ptr(x, e);
        const double orig = *p;
        // Project before restoring: an output may be a view of the input itself.
        auto eval_at = [&](double v, std::vector<double>* l) {
          *p = v;
          try {
            std::vector<Tensor> outs = call();
            const bool same = same_structure(outs, "a perturbed evaluation");
            if (same) *l = project(outs);
            *p = orig;
            return same;
          } catch (...) {
            *p = orig;
            throw;
          }
        };
        std::vector<double> plus, minus;
        if (!eval_at(orig + opts.eps, &plus) || !eval_at(orig - opts.eps, &minus)) return false;
        for (size_t k = 0; k < cot.size(); ++k) {
          (*num)[k][ii][static_cast<size_t>(e)] = (plus[k] - minus[k]) / (2.0 * opts.eps);
        }
      }
    }
    return true;
  }

  bool run() {
    if (!check_inputs() || !first_run()) return false;
    std::vector<std::vector<std::vector<double>>> ana(cot.size());
    for (size_t k = 0; k < cot.size(); ++k) {
      if (!analytic(k, &ana[k])) return false;
    }
    // The backward must be reentrant: a second graph gives the same gradients.
    {
      std::vector<std::vector<double>> again;
      if (!analytic(0, &again)) return false;
      for (size_t ii = 0; ii < again.size(); ++ii) {
        for (size_t e = 0; e < again[ii].size(); ++e) {
          if (!(std::fabs(again[ii][e] - ana[0][ii][e]) <= opts.nondet_tol)) {
            std::ostringstream os;
            os << "the backward is not deterministic: input " << diff_in[ii] << " element " << e << " got "
               << ana[0][ii][e] << " then " << again[ii][e];
            return failed(os.str());
          }
        }
      }
    }
    if (!backward_fills_only_requiring(ana[0])) return false;
    std::vector<std::vector<std::vector<double>>> num;
    if (!numeric(&num)) return false;
    for (size_t k = 0; k < cot.size(); ++k) {
      for (size_t ii = 0; ii < diff_in.size(); ++ii) {
        const auto& a = ana[k][ii];
        const auto& n = num[k][ii];
        int64_t bad = 0, first = -1;
        for (size_t e = 0; e < a.size(); ++e) {
          if (!(std::fabs(a[e] - n[e]) <= opts.atol + opts.rtol * std::fabs(n[e]))) {
            if (first < 0) first = static_cast<int64_t>(e);
            ++bad;
          }
        }
        if (bad) {
          const Tensor& x = inputs[diff_in[ii]];
          const auto f = static_cast<size_t>(first);
          std::ostringstream os;
          os.precision(10);
          os << "Jacobian mismatch for input " << diff_in[ii] << " (" << x.describe() << ") at element " << first
             << " " << index_str(x.sizes(), first) << " with cotangent " << k << ": numerical " << n[f]
             << ", analytical " << a[f] << " (|diff| " << std::fabs(a[f] - n[f]) << " > atol " << opts.atol
             << " + rtol " << opts.rtol << " * |numerical|); " << bad << " of " << a.size() << " elements differ";
          return failed(os.str());
        }
      }
    }
    return true;
  }
};

}  // namespace

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& opts) {
  Checker c{fn, inputs, opts, {}, {}, {}, {}, {}};
  GradcheckResult r;
  try {
    r.ok = c.run();
    r.message = c.fail;
  } catch (const std::exception& e) {
    r.ok = false;
    r.message = std::string("gradcheck: the function or its backward threw: ") + e.what();
  }
  return r;
}

GradcheckResult gradcheck(const GradcheckFn1& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& opts) {
  return gradcheck(GradcheckFn([&fn](const std::vector<Tensor>& xs) { return std::vector<Tensor>{fn(xs)}; }), inputs,
                   opts);
}

}  // namespace rg::autograd
