// Writes the JPEG seeds of fuzz/corpus/fuzz_jpeg/ with libjpeg directly (the variants our encoder
// does not make: progressive, arithmetic coding, restart markers, 4:4:4, CMYK, a truncated file).
// By hand: g++ -O1 -o /tmp/make_jpeg_seeds fuzz/seeds/make_jpeg_seeds.cpp -ljpeg && /tmp/make_jpeg_seeds fuzz/corpus/fuzz_jpeg
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <jpeglib.h>  // after <cstdio>: it needs size_t and FILE

namespace {
struct Variant {
  const char* name;
  int w, h, components;
  J_COLOR_SPACE space;
  bool progressive, arithmetic, h1v1, optimize;
  int restart_rows;
  size_t keep;  // bytes kept (0: all)
};

void write(const std::string& dir, const Variant& v) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = static_cast<JDIMENSION>(v.w);
  c.image_height = static_cast<JDIMENSION>(v.h);
  c.input_components = v.components;
  c.in_color_space = v.space;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 75, TRUE);
  if (v.progressive) jpeg_simple_progression(&c);
  c.arith_code = v.arithmetic;
  c.optimize_coding = v.optimize;
  c.restart_in_rows = v.restart_rows;
  if (v.h1v1) {
    for (int i = 0; i < c.num_components; ++i) c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
  }
  jpeg_start_compress(&c, TRUE);
  std::vector<unsigned char> row(static_cast<size_t>(v.w * v.components));
  while (c.next_scanline < c.image_height) {
    for (size_t i = 0; i < row.size(); ++i) row[i] = static_cast<unsigned char>(i * 11 + c.next_scanline * 29);
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  const size_t n = v.keep ? v.keep : size;
  const std::string path = dir + "/" + v.name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(buf, 1, n, f) != n) std::exit(1);
  std::fclose(f);
  std::free(buf);
}
}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";
  const Variant variants[] = {
      {"rgb420.jpg", 13, 9, 3, JCS_RGB, false, false, false, false, 0, 0},
      {"gray.jpg", 16, 16, 1, JCS_GRAYSCALE, false, false, false, false, 0, 0},
      {"progressive.jpg", 17, 12, 3, JCS_RGB, true, false, false, false, 0, 0},
      {"arith444.jpg", 8, 20, 3, JCS_RGB, false, true, true, false, 0, 0},
      {"restarts_optimized.jpg", 24, 24, 3, JCS_RGB, false, false, false, true, 1, 0},
      {"cmyk.jpg", 9, 9, 4, JCS_CMYK, false, false, false, false, 0, 0},
      {"truncated.jpg", 16, 16, 3, JCS_RGB, false, false, false, false, 0, 300},
  };
  for (const Variant& v : variants) write(dir, v);
  return 0;
}
