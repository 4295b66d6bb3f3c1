// What every fuzz target shares: the rule of Note [Fuzz invariants] (a value that passes its checks,
// or rg::Error), the abort that reports a broken invariant, and files for parsers that take a path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>
#include <typeinfo>

#include "core/error.h"

namespace rg::fuzz {

// Note [Fuzz invariants]
// A target hands its input to one parser. The parser must either return a value that passes the
// target's own checks (the format's invariants, and where the format allows it, that writing the
// value out and reading it back gives the same value), or throw rg::Error with a message (naming the
// file where the API promises it). Everything else is a finding and aborts with a message, which
// libFuzzer records as a crash with its input: another exception type (std::out_of_range,
// YAML::Exception, nlohmann's ...), a failed check, and, through the sanitizers and the flags of
// scripts/fuzz.sh, a memory error, undefined behaviour, more than 1 s for one input, one allocation
// over 512 MB, or more than 2 GB resident in all.

// Prints "fuzz invariant broken: <what>" and aborts.
[[noreturn]] void fail(const std::string& what);

#define RG_FUZZ_CHECK(cond, ...)                                                                       \
  do {                                                                                                 \
    if (!(cond)) ::rg::fuzz::fail(std::string(#cond " at " __FILE__ ":") + std::to_string(__LINE__) + \
                                  ": " + ::rg::detail::concat(__VA_ARGS__));                           \
  } while (0)

// Runs fn(); true when it returned, false when it threw rg::Error (whose message must be non-empty and,
// when `must_name` is non-empty, contain it). Any other exception aborts (Note [Fuzz invariants]).
template <typename Fn>
bool returns_or_rg_error(Fn&& fn, std::string_view must_name = {}) {
  try {
    fn();
    return true;
  } catch (const rg::Error& e) {
    const std::string_view msg = e.what();
    RG_FUZZ_CHECK(!msg.empty(), "rg::Error without a message");
    RG_FUZZ_CHECK(must_name.empty() || msg.find(must_name) != std::string_view::npos, "the error does not name '",
                  must_name, "': ", msg);
    return false;
  } catch (const std::exception& e) {
    fail(std::string("an exception other than rg::Error escaped: ") + typeid(e).name() + ": " + e.what());
  } catch (...) {
    fail("a non-std exception escaped");
  }
}

// A scratch folder of this process (under $RG_FUZZ_TMPDIR, else /dev/shm when it exists, so that the
// fsyncs of atomic writes cost nothing, else /tmp), removed at exit; targets write their input there
// for the parsers that read a path.
const std::string& scratch_dir();
// Writes bytes to scratch_dir()/name (truncating) and returns the path.
std::string write_scratch(const std::string& name, const uint8_t* data, size_t size);
std::string write_scratch(const std::string& name, std::string_view bytes);
// The whole file, or aborts.
std::string read_scratch(const std::string& path);

}  // namespace rg::fuzz
