// Can a COCO-train-sized instances json be read, and at what cost? Time and peak memory of the
// streaming SAX reader (read_coco_json, Note [COCO json]) against DOM parses (rg::Json, whose parser
// is nlohmann's SAX building our tree, and nlohmann::json itself), each in its own process.
// Usage: bench_coco_json [--mb 450] [--file /tmp/rg_bench_coco.json] [--keep]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "core/json.h"
#include "data/coco_format.h"

namespace fs = std::filesystem;

namespace {
std::string arg(int argc, char** argv, const char* name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  return fallback;
}

// COCO-shaped json of about `mb` MB: COCO train2017's proportions (118k images, 7.3 annotations
// each, polygons of 10-50 points with two decimals), scaled to the size asked for.
void write_coco(const std::string& path, double mb) {
  const auto images = static_cast<int64_t>(118287 * mb / 450.0);
  std::ofstream f(path);
  std::mt19937_64 g(1);
  std::uniform_real_distribution<double> u(0, 1);
  char buf[256];
  f << R"({"info": {"description": "synthetic COCO-sized annotations", "year": 2017}, "licenses": [], "images": [)";
  for (int64_t i = 0; i < images; ++i) {
    std::snprintf(buf, sizeof(buf), R"(%s{"license": 3, "file_name": "%012lld.jpg", "height": 480, "width": 640, "id": %lld, "date_captured": "2013-11-14 16:28:13"})",
                  i ? ", " : "", static_cast<long long>(i + 1), static_cast<long long>(i + 1));
    f << buf;
  }
  f << R"(], "annotations": [)";
  int64_t id = 1;
  for (int64_t i = 0; i < images; ++i) {
    const int n = 1 + static_cast<int>(u(g) * 12.6);
    for (int a = 0; a < n; ++a, ++id) {
      f << (id > 1 ? ", " : "") << R"({"segmentation": [[)";
      const int pts = 10 + static_cast<int>(u(g) * 40);
      for (int k = 0; k < pts; ++k) {
        std::snprintf(buf, sizeof(buf), "%s%.2f, %.2f", k ? ", " : "", u(g) * 640, u(g) * 480);
        f << buf;
      }
      std::snprintf(buf, sizeof(buf), R"(]], "area": %.3f, "iscrowd": 0, "image_id": %lld, "bbox": [%.2f, %.2f, %.2f, %.2f], "category_id": %d, "id": %lld})",
                    u(g) * 20000, static_cast<long long>(i + 1), u(g) * 500, u(g) * 400, 1 + u(g) * 139, 1 + u(g) * 79,
                    1 + static_cast<int>(u(g) * 90), static_cast<long long>(id));
      f << buf;
    }
  }
  f << R"(], "categories": [)";
  for (int c = 1; c <= 80; ++c) f << (c > 1 ? ", " : "") << R"({"supercategory": "thing", "id": )" << c << R"(, "name": "class)" << c << R"("})";
  f << "]}\n";
}

struct Run {
  double seconds = 0;
  double peak_mib = 0;
  std::string note;
};

// Runs fn in a child process: wall time from inside, peak RSS from wait4.
Run in_child(const std::function<std::string()>& fn) {
  int fd[2];
  if (pipe(fd) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    const auto t0 = std::chrono::steady_clock::now();
    std::string note;
    try {
      note = fn();
    } catch (const std::exception& e) {
      note = std::string("failed: ") + e.what();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string msg = std::to_string(s) + " " + note;
    (void)!write(fd[1], msg.data(), msg.size());
    _exit(0);
  }
  close(fd[1]);
  std::string msg(4096, '\0');
  ssize_t got = 0, n = 0;
  while ((n = read(fd[0], msg.data() + got, msg.size() - static_cast<size_t>(got))) > 0) got += n;
  close(fd[0]);
  msg.resize(static_cast<size_t>(got));
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  Run r;
  r.seconds = std::atof(msg.c_str());
  r.note = msg.substr(std::min(msg.size(), msg.find(' ') + 1));
  r.peak_mib = static_cast<double>(ru.ru_maxrss) / 1024.0;
  return r;
}
}  // namespace

int main(int argc, char** argv) {
  const double mb = std::atof(arg(argc, argv, "--mb", "450").c_str());
  const std::string path = arg(argc, argv, "--file", "/tmp/rg_bench_coco.json");
  bool keep = false;
  for (int i = 1; i < argc; ++i) keep |= std::strcmp(argv[i], "--keep") == 0;
  if (!fs::exists(path)) write_coco(path, mb);
  const double size_mb = static_cast<double>(fs::file_size(path)) / 1e6;
  const Run base = in_child([] { return std::string("empty child"); });
  std::printf("COCO instances json of %.0f MB (%s); each reader in its own process; baseline process %.0f MiB\n\n", size_mb,
              path.c_str(), base.peak_mib);
  std::printf("| reader | s | MB/s | peak RSS MiB | result |\n|---|---|---|---|---|\n");
  auto row = [&](const char* name, const Run& r) {
    std::printf("| %s | %.2f | %.0f | %.0f | %s |\n", name, r.seconds, size_mb / r.seconds, r.peak_mib, r.note.c_str());
    std::fflush(stdout);
  };
  row("read_coco_json (nlohmann SAX, streamed in 1 MiB chunks, keeps boxes only)", in_child([&] {
        const rg::data::CocoFile c = rg::data::read_coco_json(path);
        return std::to_string(c.images.size()) + " images, " + std::to_string(c.annotations.size()) + " annotations";
      }));
  row("rg::Json::parse of the file's text (SAX into our tree)", in_child([&] {
        std::ifstream f(path, std::ios::binary);
        const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        const rg::Json j = rg::Json::parse(text);
        return std::to_string(j["annotations"].size()) + " annotations";
      }));
  row("nlohmann::json::parse (DOM) of the file's text", in_child([&] {
        std::ifstream f(path, std::ios::binary);
        const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        const nlohmann::json j = nlohmann::json::parse(text);
        return std::to_string(j["annotations"].size()) + " annotations";
      }));
  if (!keep) fs::remove(path);
  return 0;
}
