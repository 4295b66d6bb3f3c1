// The driver of `ringgrad bench dp-vs-ddp` (Note [dp-vs-ddp benchmark]): starts the worker
// processes, combines their figures, writes dp_vs_ddp.csv and dp_vs_ddp.svg, checks the measured
// bucket allreduces against the alpha-beta model, and predicts DDP and DP on real GPU links.
#include "apps/bench_dp_ddp.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "apps/arg_utils.h"
#include "core/error.h"
#include "distributed/launcher.h"

namespace fs = std::filesystem;

namespace rg::app::bench {

// ---- configuration

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::string fmt(const char* f, double v) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

std::string join_ints(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s;
}

std::string join_doubles(const std::vector<double>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += fmt("%g", v[i]);
  }
  return s;
}

}  // namespace

Config parse_config(const Args& args) {
  Config c;
  c.model = get_opt(args, "--model", c.model);
  c.small_input = has_flag(args, "--small-input");
  c.width = parse_int(args, "--width", c.width);
  c.num_classes = parse_int(args, "--num-classes", c.num_classes);
  c.image_size = parse_int(args, "--image-size", c.image_size);
  c.batch = parse_int(args, "--batch-per-replica", c.batch);
  c.steps = static_cast<int>(parse_int(args, "--steps", c.steps));
  c.warmup = static_cast<int>(parse_int(args, "--warmup", c.warmup));
  if (flag_given(args, "--replicas")) {
    c.replicas.clear();
    for (const std::string& s : split_list(get_opt(args, "--replicas", ""))) {
      char* end = nullptr;
      const long v = std::strtol(s.c_str(), &end, 10);
      RG_CHECK(!s.empty() && end && *end == '\0' && v >= 1 && v <= 64,
               "bench dp-vs-ddp: --replicas expects a list like 1,2,4 (each 1..64), got '", s, "'");
      c.replicas.push_back(static_cast<int>(v));
    }
    std::sort(c.replicas.begin(), c.replicas.end());
    c.replicas.erase(std::unique(c.replicas.begin(), c.replicas.end()), c.replicas.end());
  }
  c.device = get_opt(args, "--device", c.device);
  RG_CHECK(c.device == "cpu" || c.device == "cuda", "bench dp-vs-ddp: --device must be cpu or cuda, got '",
           c.device, "'");
  c.backend = get_opt(args, "--backend", c.backend);
  RG_CHECK(c.backend.empty() || c.backend == "ring" || c.backend == "nccl",
           "bench dp-vs-ddp: --backend must be ring or nccl, got '", c.backend, "'");
  RG_CHECK(!(c.backend == "nccl" && !c.cuda()), "bench dp-vs-ddp: --backend nccl needs --device cuda");
  c.amp = get_opt(args, "--amp", c.amp);
  RG_CHECK(c.amp == "none" || c.amp == "f16" || c.amp == "bf16",
           "bench dp-vs-ddp: --amp must be none, f16 or bf16, got '", c.amp, "'");
  c.sync_bn = has_flag(args, "--sync-bn");
  c.no_overlap_variant = !has_flag(args, "--skip-no-overlap");
  c.out = get_opt(args, "--out", c.out);
  if (flag_given(args, "--link-bw-gbs")) {
    c.link_gbs.clear();
    for (const std::string& s : split_list(get_opt(args, "--link-bw-gbs", ""))) {
      char* end = nullptr;
      const double v = std::strtod(s.c_str(), &end);
      RG_CHECK(!s.empty() && end && *end == '\0' && v > 0,
               "bench dp-vs-ddp: --link-bw-gbs expects positive GB/s figures like 370,25, got '", s, "'");
      c.link_gbs.push_back(v);
    }
  }
  c.alpha_us = parse_double(args, "--alpha-us", c.alpha_us);
  c.threads = static_cast<int>(parse_int(args, "--threads-per-replica", c.threads));
  c.dp_caller_threads = static_cast<int>(parse_int(args, "--dp-caller-threads", c.dp_caller_threads));
  c.seed = static_cast<uint64_t>(parse_int(args, "--seed", 0));
  c.repeats = static_cast<int>(parse_int(args, "--repeats", c.repeats));
  c.quiet = has_flag(args, "--quiet");
  // A value given on the command line must be in its domain: only an absent one takes the default.
  for (const auto& [name, lo] : std::vector<std::pair<const char*, int64_t>>{
           {"--width", 1}, {"--num-classes", 2}, {"--image-size", 8}, {"--batch-per-replica", 1}, {"--steps", 1},
           {"--warmup", 0}, {"--threads-per-replica", 1}, {"--dp-caller-threads", 0}, {"--seed", 0}, {"--repeats", 1}}) {
    const int64_t v = parse_int(args, name, lo);
    RG_CHECK(v >= lo, "bench dp-vs-ddp: ", name, " must be >= ", lo, ", got ", v);
  }
  RG_CHECK(c.model == "resnet18" || c.model == "resnet34" || c.model == "resnet50" || c.model == "resnet101" ||
               c.model == "resnet152" || c.model == "yolov3" || c.model == "yolov3-tiny" || c.model == "yolov3-spp",
           "bench dp-vs-ddp: --model must be resnet18, resnet34, resnet50, resnet101, resnet152, yolov3, yolov3-tiny or "
           "yolov3-spp, got '", c.model, "'");
  c.resolve_defaults();
  RG_CHECK(!c.yolo() || c.image_size % 32 == 0, "bench dp-vs-ddp: --image-size must be a multiple of 32 for ",
           c.model, ", got ", c.image_size);
  RG_CHECK(c.image_size >= 8 && c.batch >= 1 && c.steps >= 1 && c.warmup >= 0 && c.width >= 1 &&
               c.num_classes >= 2 && c.threads >= 1 && c.alpha_us >= 0 && c.repeats >= 1,
           "bench dp-vs-ddp: bad sizes (need --image-size >= 8, --batch-per-replica >= 1, --steps >= 1, "
           "--warmup >= 0, --width >= 1, --num-classes >= 2, --threads-per-replica >= 1, --alpha-us >= 0, --repeats >= 1)");
  return c;
}

void Config::resolve_defaults() {
  const bool gpu = cuda();
  if (num_classes <= 0) num_classes = yolo() ? 80 : 1000;
  if (image_size <= 0) image_size = yolo() ? (gpu ? 416 : 128) : (gpu ? 224 : 64);
  if (batch <= 0) batch = gpu ? 32 : 8;
  if (steps <= 0) steps = gpu ? 20 : 8;
  if (warmup < 0) warmup = gpu ? 5 : 2;
  if (threads <= 0) {
    const int cores = std::max(1u, std::thread::hardware_concurrency());
    const int max_n = replicas.empty() ? 1 : replicas.back();
    threads = std::max(1, cores / max_n);
  }
}

Args Config::to_args() const {
  Args a = {"--model", model, "--width", std::to_string(width), "--num-classes", std::to_string(num_classes),
            "--image-size", std::to_string(image_size), "--batch-per-replica", std::to_string(batch),
            "--steps", std::to_string(steps), "--warmup", std::to_string(warmup), "--replicas", join_ints(replicas),
            "--device", device, "--amp", amp, "--out", out, "--link-bw-gbs", join_doubles(link_gbs),
            "--alpha-us", fmt("%g", alpha_us), "--threads-per-replica", std::to_string(threads),
            "--dp-caller-threads", std::to_string(dp_caller_threads), "--seed", std::to_string(seed),
            "--repeats", std::to_string(repeats)};
  if (!backend.empty()) a.insert(a.end(), {"--backend", backend});
  if (small_input) a.push_back("--small-input");
  if (sync_bn) a.push_back("--sync-bn");
  if (!no_overlap_variant) a.push_back("--skip-no-overlap");
  if (quiet) a.push_back("--quiet");
  return a;
}

// ---- the driver

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

struct Bucket {
  int64_t bytes = 0;
  double service_ms = 0;  // median over steps, mean over ranks
};

// One mode at one replica count, combined over its ranks.
struct Row {
  std::string mode, device, backend;
  int n = 1;
  int64_t global_batch = 0;
  int threads = 1, caller_threads = 1;
  double images_per_s = 0, efficiency = 0;
  // Mean ms per step (over steps, then ranks).
  double step = 0, replicate = 0, scatter = 0, forward = 0, gather = 0, backward = 0, reduce = 0, comm_wait = 0,
         optimizer = 0;
  double comm = 0, hidden = 0, hidden_fraction = 0, comm_share = 0, overlap_speedup = 0;
  double peak_mib = 0;
  int64_t grad_bytes = 0, param_bytes = 0, buffer_bytes = 0, in_bytes = 0, out_bytes = 0;
  std::vector<Bucket> buckets;
  double loss = 0;
  double foreign_cores = 0;  // mean cores busy with OTHER processes during the run (noise detector)
  double own_cores = 0;      // mean cores this run's processes used
  // Cores wanted beyond those the machine has: the run was slowed by others when this is > 0.2.
  double oversubscribed(int cores) const { return foreign_cores + own_cores - cores; }
};

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  RG_CHECK(f.good(), "bench dp-vs-ddp: cannot read ", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The last `lines` lines of a file ("" when it does not exist).
std::string tail(const std::string& path, int lines) {
  std::ifstream f(path);
  if (!f.good()) return "";
  std::vector<std::string> v;
  std::string l;
  while (std::getline(f, l)) v.push_back(l);
  std::string s;
  for (size_t i = v.size() > static_cast<size_t>(lines) ? v.size() - lines : 0; i < v.size(); ++i) s += v[i] + "\n";
  return s;
}

// The workers run this very executable: /proc/self/exe, which the forked child execs through
// its own (inherited) image, so a binary rebuilt or deleted meanwhile changes nothing.
std::string self_exe() {
  RG_CHECK(fs::exists("/proc/self/exe"), "bench dp-vs-ddp: /proc/self/exe is missing (Linux /proc needed)");
  return "/proc/self/exe";
}

bool nccl_built() {
#ifdef RINGGRAD_WITH_NCCL
  return true;
#else
  return false;
#endif
}

// The DDP backend for n ranks: --backend, else ring on CPU, nccl when every rank has its own GPU.
std::string ddp_backend(const Config& c, int n, int gpus) {
  if (!c.backend.empty()) return c.backend;
  if (!c.cuda()) return "ring";
  return gpus >= n && nccl_built() ? "nccl" : "ring";
}

// CPU seconds every core of the machine spent busy so far (/proc/stat), and those of this
// process's reaped children: their difference over a run is what OTHER processes used.
double machine_busy_s() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  double v[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // user nice system idle iowait irq softirq steal
  f >> cpu;
  for (double& x : v) f >> x;
  if (!f.good() || cpu != "cpu") return -1;
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz;
}

double children_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_CHILDREN, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// A bucket's allreduce cannot start before the LAST rank launched it, nor before this rank's
// previous allreduce finished: its own time is finish - max(latest launch over ranks, previous
// finish), averaged over ranks, median over steps. (A rank's own launch would count the time it
// waited for a slower rank, which lands on the first bucket.) Needs every rank's per-step
// timestamps; otherwise the per-rank figures stay.
void cross_rank_service(const std::vector<Json>& ranks, std::vector<Bucket>& out) {
  if (ranks.empty() || out.empty()) return;
  size_t steps = 0;
  for (const Json& b : ranks) {
    if (b.size() != out.size()) return;
    for (size_t k = 0; k < b.size(); ++k) {
      const Json* la = b[k].find("launch_abs_ms");
      const Json* fi = b[k].find("finish_abs_ms");
      if (!la || !fi || la->size() != fi->size() || la->size() == 0) return;
      if (steps == 0) steps = la->size();
      if (la->size() != steps) return;
    }
  }
  const double w = 1.0 / static_cast<double>(ranks.size());
  for (size_t k = 0; k < out.size(); ++k) {
    std::vector<double> per_step;
    for (size_t s = 0; s < steps; ++s) {
      double latest_launch = 0;
      for (const Json& b : ranks) latest_launch = std::max(latest_launch, b[k]["launch_abs_ms"][s].as_double());
      double mean = 0;
      for (const Json& b : ranks) {
        const double prev = k > 0 ? b[k - 1]["finish_abs_ms"][s].as_double() : 0.0;
        mean += w * (b[k]["finish_abs_ms"][s].as_double() - std::max(latest_launch, prev));
      }
      per_step.push_back(std::max(0.0, mean));
    }
    out[k].service_ms = median_of(per_step);
  }
}

double wall_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Row run_mode(const Config& c, const std::string& mode, int n, int gpus) {
  const bool ddp = mode.rfind("ddp", 0) == 0;
  Config wc = c;
  wc.backend = ddp ? ddp_backend(c, n, gpus) : "";
  const std::string tag = mode + "_n" + std::to_string(n);
  const std::string raw = (fs::path(c.out) / "raw" / tag).string();
  const std::string logs = (fs::path(c.out) / "logs" / tag).string();
  fs::create_directories(fs::path(c.out) / "raw");
  fs::create_directories(logs);
  const int nproc = ddp ? n : 1;
  for (int r = 0; r < nproc; ++r) fs::remove(raw + "_rank" + std::to_string(r) + ".json");

  dist::LaunchOptions lo;
  lo.nproc_per_node = nproc;
  lo.backend = wc.backend == "nccl" ? "nccl" : "ring";
  lo.program = self_exe();
  lo.args = {"bench", "dp-vs-ddp"};
  const Args wa = wc.to_args();
  lo.args.insert(lo.args.end(), wa.begin(), wa.end());
  lo.args.insert(lo.args.end(), {"--rank-worker", mode, "--worker-n", std::to_string(n), "--worker-prefix", raw});
  lo.env = {{"OMP_NUM_THREADS", std::to_string(c.threads)}};
  lo.log_dir = logs;
  lo.verbose = false;
  const double busy0 = machine_busy_s(), kids0 = children_cpu_s(), t0 = wall_s();
  const dist::LaunchResult res = dist::launch(lo);
  const double busy1 = machine_busy_s(), kids1 = children_cpu_s(), t1 = wall_s();
  if (res.exit_code != 0) {
    std::string detail;
    for (int r = 0; r < nproc; ++r) {
      const std::string log = logs + "/rank_" + std::to_string(r) + ".log";
      detail += "--- " + log + " (last lines)\n" + tail(log, 15);
    }
    RG_THROW("bench dp-vs-ddp: the ", tag, " run failed (exit code ", res.exit_code, "): ", res.message, "\n",
             detail);
  }

  Row row;
  row.mode = mode;
  row.n = n;
  if (busy0 >= 0 && busy1 >= 0 && t1 > t0) {
    row.foreign_cores = std::max(0.0, ((busy1 - busy0) - (kids1 - kids0)) / (t1 - t0));
    row.own_cores = (kids1 - kids0) / (t1 - t0);
  }
  row.backend = ddp ? wc.backend : "-";
  double max_wall = 0;
  std::vector<Json> rank_buckets;  // each rank's "buckets" array
  for (int r = 0; r < nproc; ++r) {
    const Json j = Json::parse(read_file(raw + "_rank" + std::to_string(r) + ".json"));
    const double w = 1.0 / nproc;
    if (r == 0) {
      row.device = j["device"].as_string();
      if (ddp && nproc > 1) row.device += ".." + Json::parse(read_file(raw + "_rank" + std::to_string(nproc - 1) +
                                                                       ".json"))["device"].as_string();
      row.global_batch = j["local_batch"].as_int() * nproc;
      row.threads = static_cast<int>(j["threads"].as_int());
      row.caller_threads = static_cast<int>(j["caller_threads"].as_int());
      row.grad_bytes = j["grad_bytes"].as_int();
      row.param_bytes = j["param_bytes"].as_int();
      row.buffer_bytes = j["buffer_bytes"].as_int();
      row.in_bytes = j["input_bytes_per_sample"].as_int();
      row.out_bytes = j["output_bytes_per_sample"].as_int();
      row.loss = j["loss"].as_double();
      row.buckets.resize(j["buckets"].size());
    }
    max_wall = std::max(max_wall, j["wall_ms"].as_double());
    const Json& p = j["phases"];
    row.step += w * p["step"].as_double();
    row.replicate += w * p["replicate"].as_double();
    row.scatter += w * p["scatter"].as_double();
    row.forward += w * p["forward"].as_double();
    row.gather += w * p["gather"].as_double();
    row.backward += w * p["backward"].as_double();
    row.reduce += w * p["reduce"].as_double();
    row.comm_wait += w * p["comm_wait"].as_double();
    row.optimizer += w * p["optimizer"].as_double();
    row.comm += w * j["comm_ms"].as_double();
    row.hidden += w * j["hidden_ms"].as_double();
    row.peak_mib = std::max(row.peak_mib, static_cast<double>(j["peak_bytes"].as_int()) / kMiB);
    const Json& b = j["buckets"];
    for (size_t k = 0; k < std::min(b.size(), row.buckets.size()); ++k) {
      row.buckets[k].bytes = b[k]["bytes"].as_int();
      row.buckets[k].service_ms += w * b[k]["service_ms"].as_double();
    }
    rank_buckets.push_back(b);
  }
  cross_rank_service(rank_buckets, row.buckets);
  RG_CHECK(max_wall > 0, "bench dp-vs-ddp: the ", tag, " run reported no time");
  row.images_per_s = static_cast<double>(row.global_batch) * c.steps / (max_wall / 1e3);
  row.hidden_fraction = row.comm > 0 ? row.hidden / row.comm : 0.0;
  if (ddp) {
    row.comm_share = row.step > 0 ? row.comm / row.step : 0.0;
  } else if (mode == "dp") {
    row.comm_share = row.step > 0 ? (row.replicate + row.scatter + row.gather + row.reduce) / row.step : 0.0;
  }
  return row;
}

const Row* find_row(const std::vector<Row>& rows, const std::string& mode, int n) {
  for (const Row& r : rows) {
    if (r.mode == mode && r.n == n) return &r;
  }
  return nullptr;
}

// ---- CSV and SVG

void write_csv(const std::string& path, const Config& c, const std::vector<Row>& rows) {
  std::ofstream f(path);
  RG_CHECK(f.good(), "bench dp-vs-ddp: cannot write ", path);
  f << "mode,n,device,backend,model,image_size,batch_per_replica,global_batch,steps,threads_per_replica,"
       "images_per_s,scaling_efficiency,step_ms,replicate_ms,scatter_ms,forward_ms,gather_ms,backward_ms,reduce_ms,"
       "comm_wait_ms,optimizer_ms,comm_ms,hidden_fraction,comm_share,overlap_speedup,peak_mem_mib,grad_mib,"
       "buckets,other_load_cores,own_cores\n";
  for (const Row& r : rows) {
    f << r.mode << "," << r.n << "," << r.device << "," << r.backend << "," << c.model << (c.small_input ? "-small" : "")
      << "," << c.image_size << "," << c.batch << "," << r.global_batch << "," << c.steps << "," << r.threads << ","
      << fmt("%.4f", r.images_per_s) << "," << fmt("%.6f", r.efficiency) << "," << fmt("%.3f", r.step) << ","
      << fmt("%.3f", r.replicate) << "," << fmt("%.3f", r.scatter) << "," << fmt("%.3f", r.forward) << ","
      << fmt("%.3f", r.gather) << "," << fmt("%.3f", r.backward) << "," << fmt("%.3f", r.reduce) << ","
      << fmt("%.3f", r.comm_wait) << "," << fmt("%.3f", r.optimizer) << "," << fmt("%.3f", r.comm) << ","
      << fmt("%.6f", r.hidden_fraction) << "," << fmt("%.6f", r.comm_share) << ","
      << fmt("%.6f", r.overlap_speedup) << "," << fmt("%.2f", r.peak_mib) << ","
      << fmt("%.3f", static_cast<double>(r.grad_bytes) / kMiB) << "," << r.buckets.size() << ","
      << fmt("%.2f", r.foreign_cores) << "," << fmt("%.2f", r.own_cores) << "\n";
  }
  RG_CHECK(f.good(), "bench dp-vs-ddp: writing ", path, " failed");
}

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks over [0, hi].
double nice_step(double hi, int target) {
  const double raw = hi / std::max(1, target);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * p >= raw) return m * p;
  }
  return 10 * p;
}

std::string svg_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '<') o += "&lt;";
    else if (ch == '>') o += "&gt;";
    else if (ch == '&') o += "&amp;";
    else o += ch;
  }
  return o;
}

void write_svg(const std::string& path, const Config& c, const std::vector<Row>& rows) {
  const double W = 720, H = 460, L = 80, R = 190, T = 50, B = 60;  // canvas and margins
  const double pw = W - L - R, ph = H - T - B;
  std::vector<int> ns = c.replicas;
  // x from 0.5 to max N + 0.5, so that no marker sits on the axis; ticks at the measured N.
  const double n_lo = 0.5, n_hi = ns.back() + 0.5;
  const Row* single = find_row(rows, "single", 1);
  double y_hi = 0;
  for (const Row& r : rows) y_hi = std::max(y_hi, r.images_per_s);
  if (single) y_hi = std::max(y_hi, single->images_per_s * ns.back());
  const double ystep = nice_step(y_hi * 1.05, 6);
  const double y_top = std::ceil(y_hi * 1.05 / ystep) * ystep;
  auto X = [&](double n) { return L + (n - n_lo) / (n_hi - n_lo) * pw; };
  auto Y = [&](double v) { return T + ph - v / y_top * ph; };

  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
    << " " << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"" << L + pw / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">"
    << svg_escape("DP vs DDP: " + c.model + (c.small_input ? " (small input)" : "") + ", " +
                  std::to_string(c.image_size) + "px, batch " + std::to_string(c.batch) + "/replica, " + c.device +
                  ", amp " + c.amp)
    << "</text>\n";
  // grid, ticks and tick labels
  for (double v = 0; v <= y_top + 1e-9; v += ystep) {
    s << "<line x1=\"" << L << "\" y1=\"" << Y(v) << "\" x2=\"" << L + pw << "\" y2=\"" << Y(v)
      << "\" stroke=\"#e0e0e0\"/>\n";
    s << "<line x1=\"" << L - 5 << "\" y1=\"" << Y(v) << "\" x2=\"" << L << "\" y2=\"" << Y(v)
      << "\" stroke=\"black\"/>\n";
    s << "<text x=\"" << L - 8 << "\" y=\"" << Y(v) + 4 << "\" text-anchor=\"end\">" << fmt("%g", v) << "</text>\n";
  }
  std::vector<int> xt = ns;
  if (std::find(xt.begin(), xt.end(), 1) == xt.end()) xt.insert(xt.begin(), 1);  // the single device
  for (int n : xt) {
    s << "<line x1=\"" << X(n) << "\" y1=\"" << T + ph << "\" x2=\"" << X(n) << "\" y2=\"" << T + ph + 5
      << "\" stroke=\"black\"/>\n";
    s << "<text x=\"" << X(n) << "\" y=\"" << T + ph + 20 << "\" text-anchor=\"middle\">" << n << "</text>\n";
  }
  // axes and labels
  s << "<line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\"" << T + ph << "\" stroke=\"black\"/>\n";
  s << "<line x1=\"" << L << "\" y1=\"" << T + ph << "\" x2=\"" << L + pw << "\" y2=\"" << T + ph
    << "\" stroke=\"black\"/>\n";
  s << "<text x=\"" << L + pw / 2 << "\" y=\"" << H - 15 << "\" text-anchor=\"middle\">replicas / ranks (N)</text>\n";
  s << "<text x=\"20\" y=\"" << T + ph / 2 << "\" text-anchor=\"middle\" transform=\"rotate(-90 20 " << T + ph / 2
    << ")\">images / s (global)</text>\n";

  struct Series {
    std::string mode, label, color, dash;
  };
  const std::vector<Series> series = {
      {"ideal", "ideal (N x single)", "#999999", "6,4"},
      {"single", "single device", "#000000", ""},
      {"dp", "DataParallel", "#d62728", ""},
      {"ddp", "DDP (overlapped)", "#1f77b4", ""},
      {"ddp_no_overlap", "DDP (no overlap)", "#2ca02c", "3,3"},
      {"ddp_syncbn", "DDP + SyncBN", "#9467bd", ""},
  };
  int legend = 0;
  for (const Series& se : series) {
    std::vector<std::pair<int, double>> pts;
    if (se.mode == "ideal") {
      if (single) {
        for (int n : ns) pts.emplace_back(n, single->images_per_s * n);
      }
    } else {
      for (const Row& r : rows) {
        if (r.mode == se.mode) pts.emplace_back(r.n, r.images_per_s);
      }
    }
    if (pts.empty()) continue;
    std::sort(pts.begin(), pts.end());
    if (pts.size() > 1) {
      s << "<polyline fill=\"none\" stroke=\"" << se.color << "\" stroke-width=\"2\"";
      if (!se.dash.empty()) s << " stroke-dasharray=\"" << se.dash << "\"";
      s << " points=\"";
      for (const auto& [n, v] : pts) s << X(n) << "," << Y(v) << " ";
      s << "\"/>\n";
    }
    for (const auto& [n, v] : pts) {
      s << "<circle cx=\"" << X(n) << "\" cy=\"" << Y(v) << "\" r=\"4\" fill=\"" << se.color << "\"><title>"
        << svg_escape(se.label) << " N=" << n << ": " << fmt("%.1f", v) << " img/s</title></circle>\n";
    }
    const double ly = T + 10 + legend * 20, lx = L + pw + 15;
    s << "<line x1=\"" << lx << "\" y1=\"" << ly << "\" x2=\"" << lx + 24 << "\" y2=\"" << ly << "\" stroke=\""
      << se.color << "\" stroke-width=\"2\"" << (se.dash.empty() ? "" : " stroke-dasharray=\"" + se.dash + "\"")
      << "/>\n";
    s << "<text x=\"" << lx + 30 << "\" y=\"" << ly + 4 << "\">" << svg_escape(se.label) << "</text>\n";
    ++legend;
  }
  s << "</svg>\n";
  std::ofstream f(path);
  RG_CHECK(f.good(), "bench dp-vs-ddp: cannot write ", path);
  f << s.str();
  RG_CHECK(f.good(), "bench dp-vs-ddp: writing ", path, " failed");
}

// ---- the alpha-beta model

// Buckets of the measured DDP runs (sizes do not depend on N), else one bucket of every gradient.
std::vector<int64_t> bucket_sizes(const std::vector<Row>& rows, int64_t grad_bytes) {
  for (const Row& r : rows) {
    if (r.mode.rfind("ddp", 0) == 0 && r.mode != "ddp_syncbn" && !r.buckets.empty()) {
      std::vector<int64_t> v;
      for (const Bucket& b : r.buckets) v.push_back(b.bytes);
      return v;
    }
  }
  return {grad_bytes};
}

void print_bucket_check(const Config& c, const std::vector<Row>& rows) {
  // Prefer the non-overlapped run: its allreduces do not share the cores with backward.
  const Row* base = nullptr;
  for (const char* m : {"ddp_no_overlap", "ddp"}) {
    for (const Row& r : rows) {
      if (r.mode == m && r.n >= 2 && !r.buckets.empty() && (!base || r.n > base->n)) base = &r;
    }
    if (base) break;
  }
  if (!base) {
    std::printf("\nbucket model check: no DDP run with N >= 2, nothing to check\n");
    return;
  }
  const int n = base->n;
  const double frac = 2.0 * (n - 1) / n;
  const double alpha_ms = c.alpha_us * 1e-3 * 2 * (n - 1);
  size_t big = 0;
  for (size_t k = 0; k < base->buckets.size(); ++k) {
    if (base->buckets[k].bytes > base->buckets[big].bytes) big = k;
  }
  const double t_big = base->buckets[big].service_ms;
  const double beta_time = std::max(t_big - alpha_ms, 1e-6);
  const double bw = frac * static_cast<double>(base->buckets[big].bytes) / beta_time;  // bytes per ms
  const Row* ov = find_row(rows, "ddp", n);
  std::printf("\nbucket model check (%s, N=%d): measured allreduce time per bucket (median over steps of finish - "
              "max(last rank's launch, previous finish)) vs alpha + 2(N-1)/N * bytes / bw, alpha = 2(N-1) x %.1f us = %.3f ms, "
              "bw fitted on the largest bucket = %.2f GB/s (algorithm bandwidth)\n",
              base->mode.c_str(), n, c.alpha_us, alpha_ms, bw * 1e3 / 1e9);
  std::printf("  %6s %10s %12s %10s %9s%s\n", "bucket", "MiB", "measured ms", "model ms", "rel err",
              ov && ov != base ? "  overlapped run ms" : "");
  double sum_abs = 0;
  for (size_t k = 0; k < base->buckets.size(); ++k) {
    const Bucket& b = base->buckets[k];
    const double model = alpha_ms + frac * static_cast<double>(b.bytes) / bw;
    const double err = b.service_ms > 0 ? (model - b.service_ms) / b.service_ms : 0.0;
    sum_abs += std::fabs(err);
    std::printf("  %6zu %10.2f %12.3f %10.3f %8.1f%%", k, static_cast<double>(b.bytes) / kMiB, b.service_ms, model,
                100 * err);
    if (ov && ov != base && k < ov->buckets.size()) std::printf("  %18.3f", ov->buckets[k].service_ms);
    std::printf("\n");
  }
  std::printf("  mean |rel err| %.1f%% over %zu buckets\n", 100 * sum_abs / base->buckets.size(),
              base->buckets.size());
}

void print_prediction(const Config& c, const std::vector<Row>& rows) {
  const Row* single = find_row(rows, "single", 1);
  if (!single) return;
  const double compute = single->forward + single->backward + single->optimizer;
  const double bwd = single->backward;
  const int64_t S = single->grad_bytes;
  const int64_t P = single->param_bytes + single->buffer_bytes;
  const std::vector<int64_t> buckets = bucket_sizes(rows, S);
  // The measured hidden fraction of the overlapped DDP run with the most ranks.
  const Row* ov = nullptr;
  for (const Row& r : rows) {
    if (r.mode == "ddp" && r.n >= 2 && (!ov || r.n > ov->n)) ov = &r;
  }
  const double h = ov ? ov->hidden_fraction : 0.0;
  const double hop = c.alpha_us * 1e-3;
  std::printf("\nanalytical prediction for N GPUs on real links (per-replica batch %lld; compute = this run's "
              "single-device forward + backward + optimizer = %.2f ms, backward %.2f ms; gradients S = %.2f MiB in %zu "
              "bucket(s); parameters + buffers P = %.2f MiB; alpha = %.1f us per hop, an assumption)\n",
              static_cast<long long>(c.batch), compute, bwd, static_cast<double>(S) / kMiB, buckets.size(),
              static_cast<double>(P) / kMiB, c.alpha_us);
  if (!c.cuda()) {
    std::printf("  (compute was measured on this CPU: the figures say what N devices of this speed would do on those "
                "links; run with --device cuda for GPU figures)\n");
  }
  std::printf("  DDP: step = compute + exposed ring allreduce; per bucket 2(N-1)/N * bytes / B_link + 2(N-1) alpha.\n"
              "       exposed (a) assumes every bucket but the last hides under the remaining backward: t_last + "
              "max(0, t_others - backward);\n"
              "       exposed (h) uses this run's measured hidden fraction h = %.2f%s: (1 - h) * t_comm.\n",
              h, ov ? "" : " (no overlapped DDP run with N >= 2: h = 0)");
  std::printf("  DP:  step = compute + replicate (N-1) P / B_link + scatter (N-1) B in / B_link + gather (N-1) B out / "
              "B_link + reduce (N-1) S / B_link, every copy sequential from/to device 0;\n"
              "       not modelled: DP's single process drives every replica's backward from one thread (and "
              "PyTorch's GIL), so real DP is slower still: an upper bound.\n");
  std::printf("  %8s %3s %10s %12s %12s %12s %12s %12s %10s\n", "link", "N", "comm ms", "DDP ms (a)", "DDP img/s (a)",
              "DDP img/s (h)", "DP ms", "DP img/s", "DDP/DP (a)");
  for (double gbs : c.link_gbs) {
    const double bpm = gbs * 1e9 / 1e3;  // bytes per ms
    for (int n : {2, 4, 8}) {
      const double frac = 2.0 * (n - 1) / n;
      double t_comm = 0, t_last = 0;
      for (size_t k = 0; k < buckets.size(); ++k) {
        const double t = frac * static_cast<double>(buckets[k]) / bpm + 2 * (n - 1) * hop;
        t_comm += t;
        if (k + 1 == buckets.size()) t_last = t;
      }
      const double exposed_a = t_last + std::max(0.0, t_comm - t_last - bwd);
      const double exposed_h = (1 - h) * t_comm;
      const double ddp_a = compute + exposed_a, ddp_h = compute + exposed_h;
      const double m = n - 1;
      const double dp_ms = compute + (m * static_cast<double>(P) / bpm + m * hop) +
                           (m * c.batch * static_cast<double>(single->in_bytes) / bpm + m * hop) +
                           (m * c.batch * static_cast<double>(single->out_bytes) / bpm + m * hop) +
                           (m * static_cast<double>(S) / bpm + m * hop);
      const double imgs = static_cast<double>(n * c.batch) * 1e3;
      std::printf("  %6.0fGB/s %3d %10.3f %12.2f %12.1f %12.1f %12.2f %12.1f %9.2fx\n", gbs, n, t_comm, ddp_a,
                  imgs / ddp_a, imgs / ddp_h, dp_ms, imgs / dp_ms, dp_ms / ddp_a);
    }
  }
}

void print_targets(const Config& c, const std::vector<Row>& rows) {
  std::printf("\nissue targets:\n");
  const Row* dp2 = find_row(rows, "dp", 2);
  const Row* ddp2 = find_row(rows, "ddp", 2);
  if (!c.cuda() && dp2 && ddp2) {
    const double r = ddp2->images_per_s / dp2->images_per_s;
    std::printf("  CPU, 2 replicas: DDP / DP images/s = %.3f (target >= 1.05): %s\n", r, r >= 1.05 ? "met" : "NOT met");
  }
  for (const Row& r : rows) {
    if (r.mode != "ddp" || r.n < 2) continue;
    const Row* no = find_row(rows, "ddp_no_overlap", r.n);
    if (!no) continue;
    const double share = no->comm_share;
    std::printf("  N=%d: DDP overlapped / non-overlapped = %.3f, communication %.1f%% of the non-overlapped step "
                "(target >= 1.1 when >= 20%%): %s\n",
                r.n, r.overlap_speedup, 100 * share,
                share < 0.2 ? "not applicable" : (r.overlap_speedup >= 1.1 ? "met" : "NOT met"));
  }
  for (const Row& r : rows) {
    if (r.mode != "ddp_syncbn") continue;
    const Row* plain = find_row(rows, "ddp", r.n);
    if (!plain) continue;
    const double over = r.step - plain->step;
    std::printf("  N=%d: SyncBN overhead = DDP+SyncBN step - DDP step = %.2f ms = %.1f%% of the DDP step (target <= "
                "10%% for ResNet-50 on one GPU with 2 ranks%s)\n",
                r.n, over, 100 * over / plain->step, c.cuda() ? "" : "; this run is on CPU, the target is for GPU");
  }
}

}  // namespace

int run_driver(const Config& cfg) {
  const Config& c = cfg;
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  const int gpus = c.cuda() ? dist::visible_gpus().count() : 0;
  RG_CHECK(!c.cuda() || gpus > 0, "bench dp-vs-ddp: --device cuda but no GPU is visible (CUDA_VISIBLE_DEVICES=",
           std::getenv("CUDA_VISIBLE_DEVICES") ? std::getenv("CUDA_VISIBLE_DEVICES") : "(unset)", ")");
  fs::create_directories(c.out);
  const int max_n = c.replicas.back();

  std::printf("ringgrad bench dp-vs-ddp: %s%s (width %lld, %lld classes), %lldx%lld synthetic images, batch %lld per "
              "replica, %d timed step(s) after %d warm-up, device %s, amp %s, replicas %s%s\n",
              c.model.c_str(), c.small_input ? " small-input" : "", static_cast<long long>(c.width),
              static_cast<long long>(c.num_classes), static_cast<long long>(c.image_size),
              static_cast<long long>(c.image_size), static_cast<long long>(c.batch), c.steps, c.warmup,
              c.device.c_str(), c.amp.c_str(), join_ints(c.replicas).c_str(),
              c.repeats > 1 ? (", " + std::to_string(c.repeats) + " repeats (fastest kept)").c_str() : "");
  std::printf("threads (fairness): %d OpenMP thread(s) per replica in every mode: OMP_NUM_THREADS=%d for the single "
              "device and for every DDP rank; DataParallel's replica threads %d each and its caller thread (loss, "
              "backward, optimizer) %s; %d core(s) here%s\n",
              c.threads, c.threads, c.threads,
              c.dp_caller_threads > 0 ? std::to_string(c.dp_caller_threads).c_str()
                                      : ("N x " + std::to_string(c.threads) + " (the process's whole budget)").c_str(),
              cores, c.threads * max_n > cores ? " (oversubscribed: more replica threads than cores)" : "");
  if (c.cuda()) {
    std::printf("GPUs visible: %d; DataParallel on %s; DDP backend per N: ", gpus,
                gpus >= max_n ? "one GPU per replica" : "cuda:0 streams (virtual devices) when N exceeds the GPUs");
    for (int n : c.replicas) std::printf("N=%d %s  ", n, ddp_backend(c, n, gpus).c_str());
    std::printf("\n");
  }
  std::printf("timing: CPU steps timed phase by phase as they run; CUDA: a free-running pass for images/s, then a "
              "pass synchronised at phase boundaries for the breakdown. Every mode runs in fresh process(es).\n\n");
  std::fflush(stdout);

  std::vector<std::pair<std::string, int>> plan = {{"single", 1}};
  for (int n : c.replicas) {
    plan.emplace_back("dp", n);
    plan.emplace_back("ddp", n);
    if (n >= 2 && c.no_overlap_variant) plan.emplace_back("ddp_no_overlap", n);
    if (n >= 2 && c.sync_bn) plan.emplace_back("ddp_syncbn", n);
  }
  // Every repeat runs the whole plan again (so slow drifts hit every mode alike); each mode keeps
  // its fastest run, the one least disturbed by anything else on the machine.
  std::vector<Row> rows(plan.size());
  for (int rep = 0; rep < c.repeats; ++rep) {
    for (size_t i = 0; i < plan.size(); ++i) {
      const auto& [mode, n] = plan[i];
      if (!c.quiet) {
        std::printf("  %srunning %-15s N=%d ...", c.repeats > 1 ? fmt("[%.0f] ", rep + 1).c_str() : "", mode.c_str(),
                    n);
        std::fflush(stdout);
      }
      Row r = run_mode(c, mode, n, gpus);
      if (!c.quiet) {
        std::printf(" %.2f img/s, %.1f ms/step%s\n", r.images_per_s, r.step,
                    r.foreign_cores > 0.2 && r.oversubscribed(cores) > 0.2
                        ? fmt(" (WARNING: other processes kept %.1f cores busy: figures disturbed)", r.foreign_cores)
                              .c_str()
                        : "");
        std::fflush(stdout);
      }
      if (rep == 0 || r.images_per_s > rows[i].images_per_s) rows[i] = std::move(r);
    }
  }
  const Row* single = find_row(rows, "single", 1);
  for (Row& r : rows) {
    r.efficiency = single && single->images_per_s > 0 ? r.images_per_s / (r.n * single->images_per_s) : 0.0;
    if (r.mode == "ddp") {
      const Row* no = find_row(rows, "ddp_no_overlap", r.n);
      r.overlap_speedup = no && no->images_per_s > 0 ? r.images_per_s / no->images_per_s : 0.0;
    }
  }

  // ---- the tables
  std::printf("\n%-15s %3s %-16s %-6s %10s %6s %9s %10s %6s %6s\n", "mode", "N", "device", "backend", "img/s",
              "eff", "ms/step", "peak MiB", "own", "other");
  for (const Row& r : rows) {
    std::printf("%-15s %3d %-16s %-6s %10.2f %6.3f %9.2f %10.1f %6.2f %6.2f\n", r.mode.c_str(), r.n, r.device.c_str(),
                r.backend.c_str(), r.images_per_s, r.efficiency, r.step, r.peak_mib, r.own_cores, r.foreign_cores);
  }
  std::printf("(peak MiB: the allocator's peak per device: the CUDA caching allocator per GPU, or on CPU the "
              "process's allocator, i.e. all DataParallel replicas together; own: mean cores the run's processes "
              "used; other: cores kept busy by OTHER processes during the run, from /proc/stat less this run's own CPU time: when that plus the run's own "
              "exceeds the %d cores by more than 0.2 the run was slowed by others)\n", cores);
  std::printf("\ntime per step (ms, mean over the timed steps and ranks)\n");
  std::printf("%-15s %3s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n", "mode", "N", "replicate", "scatter", "forward",
              "gather", "backward", "reduce", "comm-wait", "optimizer", "total");
  for (const Row& r : rows) {
    std::printf("%-15s %3d %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n", r.mode.c_str(), r.n, r.replicate,
                r.scatter, r.forward, r.gather, r.backward, r.reduce, r.comm_wait, r.optimizer, r.step);
  }
  std::printf("(forward includes the loss; DP backward excludes its reduce onto device 0; DDP backward excludes "
              "comm-wait, the time after the engine finished spent waiting for the allreduces)\n");
  bool any_ddp = false;
  for (const Row& r : rows) any_ddp = any_ddp || (r.mode.rfind("ddp", 0) == 0 && r.n >= 2);
  if (any_ddp) {
    std::printf("\nDDP communication (from DDPStats)\n%-15s %3s %9s %9s %9s %11s %9s\n", "mode", "N", "comm ms",
                "hidden %", "comm/step", "overlap x", "buckets");
    for (const Row& r : rows) {
      if (r.mode.rfind("ddp", 0) != 0 || r.n < 2) continue;
      std::printf("%-15s %3d %9.2f %9.1f %9.3f %11s %9zu\n", r.mode.c_str(), r.n, r.comm, 100 * r.hidden_fraction,
                  r.comm_share, r.mode == "ddp" && r.overlap_speedup > 0 ? fmt("%.3f", r.overlap_speedup).c_str() : "-",
                  r.buckets.size());
    }
    std::printf("(overlap x = overlapped / non-overlapped images/s at the same N; comm/step = communication time / "
                "step time)\n");
  }
  print_bucket_check(c, rows);
  print_prediction(c, rows);
  print_targets(c, rows);

  const std::string csv = (fs::path(c.out) / "dp_vs_ddp.csv").string();
  const std::string svg = (fs::path(c.out) / "dp_vs_ddp.svg").string();
  write_csv(csv, c, rows);
  write_svg(svg, c, rows);
  std::printf("\nwrote %s and %s\n", csv.c_str(), svg.c_str());
  return 0;
}

}  // namespace rg::app::bench
