//===- moe-run.cpp - run a compiled model library from the command line ---===//
//
// moe-run --model libm.so [--entry NAME] [--weights w.safetensors]
//         --input NAME=path.npy ... [--output NAME=path.npy ... | --output-dir DIR]
//         [--print] [--threads N] [--time N] [--stats stats.json] [--list]
//         [--packed-weights-mb N] [--warm-calls N]
//         [--device cpu|cuda|rocm] [--compare-model LIB2] [--compare-weights W2]
//         [--compare-input NAME=path.npy ...]
//
// Links only libmoert (no LLVM/MLIR). Every error prints one line
// "moe-run: error: ..." on stderr and exits with status 1.
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>

#include "moert/api.h"

namespace {

const char kUsage[] =
    R"(usage: moe-run --model LIB [options]

Loads a model library built by moe-compile, binds its arguments from .npy
inputs and a safetensors weights file, calls one entry point and writes,
prints or times the results.

options:
  --model LIB               the model library (.so) to load (required)
  --entry NAME              the entry point to call (default: the only one)
  --weights FILE            safetensors file; arguments that are not given
                            as inputs are bound from it by name (float
                            weights are converted to the argument's dtype)
  --weights-placement huge-pages|map
                            huge-pages (default): read the weights into
                            memory backed by transparent huge pages where the
                            system allows (a copy; fewer TLB misses when the
                            kernels stream expert weights); map: map the file
                            read-only (no copy, shared page cache)
  --input NAME=FILE.npy     an argument from a .npy file (repeatable); f32/f16
                            inputs are converted to the argument's float dtype
  --output NAME=FILE.npy    write result NAME to a .npy file (repeatable)
  --output-dir DIR          write every result to DIR/NAME.npy
  --print                   print the results
  --device cpu|cuda|rocm    the device to run on; must match the library's
                            target (moe-compile --target); checked before
                            loading, with a clear error if the driver or a
                            device is missing (default: the library's target)
  --cold                    with --time: before every timed call, evict the
                            CPU caches (256 MiB read) and flush the weights
                            out of them on all threads, so weights are read
                            from memory as in serving (the threads stay
                            awake, as between back-to-back layers)
  --threads N               threads the model's kernels use (default 0 = all
                            cores)
  --packed-weights-mb N     most MiB of packed weight copies the session keeps
                            for the expert kernels' GEMM path, which f32
                            decode reads too (0 = none: pack on every call,
                            decode from the stored weights; default: what the
                            weights take in f32, plus an eighth); with --time,
                            the MiB kept is printed
  --warm-calls N            make N calls (same inputs, results discarded)
                            before the one whose results and statistics are
                            written: checks results once the session's state
                            is warm (packed weights kept); default 0
  --time N                  after the first (warm-up) call, run N timed calls
                            and print the mean and minimum time per call
  --compare-model LIB2      with --time: also load LIB2 (same entry name, same
                            inputs, its own session) and time it against the
                            model call by call: N rounds of one call of each,
                            the order flipping every round, so that a machine
                            whose speed drifts (memory bandwidth that changes
                            within seconds) slows both alike; prints both
                            times and the median and range of the per-round
                            ratios model / compare
  --compare-weights W2      with --time: the weights of the compared model
                            (default: --weights); alone, compares the model
                            with itself bound to W2
  --compare-input NAME=FILE.npy
                            with --time (repeatable): compare the model with
                            itself called with this input instead of
                            --input NAME, in the same session: the same
                            weights and packed weights in the same memory, so
                            only what the inputs change (e.g. the routing)
                            differs; not with --compare-model/-weights
  --stats FILE              write the routing statistics of the first call
                            (the one whose results are written) as JSON
  --list                    list the entry points with their arguments and
                            results, then exit
  -h, --help                show this help

bf16 results are written to .npy as f32 (NumPy has no bfloat16).
Exit status: 0 on success, 1 on any error.
)";

struct Options {
  moert_weights_placement placement = MOERT_WEIGHTS_HUGE_PAGES;
  std::string model;
  std::string entry;
  std::string weights;
  std::vector<std::pair<std::string, std::string>> inputs;
  std::vector<std::pair<std::string, std::string>> outputs;
  std::string output_dir;
  std::string stats;
  bool print = false;
  bool list = false;
  int64_t time_calls = 0;
  int32_t threads = 0; // 0 = all cores
  std::string device;  // "" = whatever the library targets
  bool cold = false;   // evict the caches before every timed call
  int64_t packed_mb = -1; // < 0: the session's default
  int64_t warm_calls = 0;
  std::string compare_model;   // with --time: a model timed against this one
  std::string compare_weights; // its weights ("" = the same as --weights)
  // With --time: the same session timed with these inputs replacing
  // --input's of the same names.
  std::vector<std::pair<std::string, std::string>> compare_inputs;

  // Whether a second model (or the model with other inputs) is timed
  // against this one.
  bool Compare() const {
    return !compare_model.empty() || !compare_weights.empty() ||
           !compare_inputs.empty();
  }
};

[[noreturn]] void Fail(const std::string &message) {
  std::fprintf(stderr, "moe-run: error: %s\n", message.c_str());
  std::exit(1);
}

// Exits with the status's message if it is an error.
void Check(moert_status_t status, const std::string &context = "") {
  if (!status)
    return;
  std::string message = moert_status_message(status);
  moert_status_free(status);
  Fail(context.empty() ? message : context + ": " + message);
}

void Note(const std::string &message) {
  std::fprintf(stderr, "moe-run: note: %s\n", message.c_str());
}

// The integer `value` in [lo, hi], or exits with "<expects>, got 'value'".
int64_t ParseInt(const std::string &value, int64_t lo, int64_t hi,
                 const char *expects) {
  char *end = nullptr;
  errno = 0;
  long long n = std::strtoll(value.c_str(), &end, 10);
  if (errno != 0 || end == value.c_str() || *end != '\0' || n < lo || n > hi)
    Fail(std::string(expects) + ", got '" + value + "'");
  return n;
}

std::pair<std::string, std::string> SplitNameValue(const std::string &option,
                                                   const std::string &value) {
  size_t eq = value.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == value.size())
    Fail(option + " expects NAME=PATH, got '" + value + "'");
  return {value.substr(0, eq), value.substr(eq + 1)};
}

Options ParseOptions(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg == "--print") {
      o.print = true;
      continue;
    }
    if (arg == "--list") {
      o.list = true;
      continue;
    }
    // Options with a value: "--opt value" or "--opt=value".
    std::string name = arg, value;
    bool has_value = false;
    size_t eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    if (arg == "--cold") {
      o.cold = true;
      continue;
    }
    static const char *const kValued[] = {"--model",  "--entry",      "--weights",
                                          "--input",  "--output",     "--output-dir",
                                          "--time",   "--stats",      "--threads",
                                          "--device", "--weights-placement",
                                          "--packed-weights-mb", "--warm-calls",
                                          "--compare-model", "--compare-weights",
                                          "--compare-input"};
    bool valued = std::find_if(std::begin(kValued), std::end(kValued),
                               [&](const char *k) { return name == k; }) !=
                  std::end(kValued);
    if (!valued)
      Fail("unknown option '" + arg + "' (see --help)");
    if (!has_value) {
      if (i + 1 >= argc)
        Fail(name + " needs a value (see --help)");
      value = argv[++i];
    }
    if (name == "--model") {
      o.model = value;
    } else if (name == "--entry") {
      o.entry = value;
    } else if (name == "--weights") {
      o.weights = value;
    } else if (name == "--input") {
      o.inputs.push_back(SplitNameValue(name, value));
    } else if (name == "--output") {
      o.outputs.push_back(SplitNameValue(name, value));
    } else if (name == "--output-dir") {
      o.output_dir = value;
    } else if (name == "--stats") {
      o.stats = value;
    } else if (name == "--weights-placement") {
      if (value == "huge-pages")
        o.placement = MOERT_WEIGHTS_HUGE_PAGES;
      else if (value == "map")
        o.placement = MOERT_WEIGHTS_MAP;
      else
        Fail("--weights-placement expects huge-pages or map, got '" + value + "'");
    } else if (name == "--device") {
      if (moert_device_kind_from_name(value.c_str()) < 0)
        Fail("--device expects cpu, cuda or rocm, got '" + value + "'");
      o.device = value;
    } else if (name == "--threads") {
      o.threads = static_cast<int32_t>(ParseInt(
          value, 0, 4096,
          "--threads expects an integer in [0, 4096] (0 = all cores)"));
    } else if (name == "--packed-weights-mb") {
      o.packed_mb = ParseInt(value, 0, int64_t(1) << 40,
                             "--packed-weights-mb expects a non-negative "
                             "integer (MiB)");
    } else if (name == "--compare-model") {
      o.compare_model = value;
    } else if (name == "--compare-weights") {
      o.compare_weights = value;
    } else if (name == "--compare-input") {
      o.compare_inputs.push_back(SplitNameValue(name, value));
    } else if (name == "--warm-calls") {
      o.warm_calls = ParseInt(value, 0, 1000000,
                              "--warm-calls expects an integer in [0, 1000000]");
    } else { // --time
      o.time_calls = ParseInt(value, 1, INT64_MAX,
                              "--time expects a positive integer");
    }
  }
  if (o.model.empty())
    Fail("--model is required (see --help)");
  if (!o.outputs.empty() && !o.output_dir.empty())
    Fail("--output and --output-dir cannot be combined");
  if (o.Compare() && o.time_calls == 0)
    Fail("--compare-model, --compare-weights and --compare-input need --time");
  if (o.Compare() && o.list)
    Fail("--compare-model, --compare-weights and --compare-input cannot be "
         "combined with --list");
  if (!o.compare_inputs.empty() &&
      (!o.compare_model.empty() || !o.compare_weights.empty()))
    Fail("--compare-input cannot be combined with --compare-model or "
         "--compare-weights (it compares the model with itself)");
  for (size_t i = 0; i < o.compare_inputs.size(); ++i) {
    const std::string &name = o.compare_inputs[i].first;
    for (size_t j = 0; j < i; ++j)
      if (o.compare_inputs[j].first == name)
        Fail("--compare-input '" + name + "' is given twice");
    if (std::none_of(o.inputs.begin(), o.inputs.end(),
                     [&](const auto &in) { return in.first == name; }))
      Fail("--compare-input '" + name + "': no --input '" + name +
           "' to replace");
  }
  for (size_t i = 0; i < o.inputs.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (o.inputs[i].first == o.inputs[j].first)
        Fail("--input '" + o.inputs[i].first + "' is given twice");
  for (size_t i = 0; i < o.outputs.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (o.outputs[i].first == o.outputs[j].first)
        Fail("--output '" + o.outputs[i].first + "' is given twice");
  return o;
}

std::string ShapeString(int32_t rank, const int64_t *shape) {
  std::string s = "[";
  for (int32_t i = 0; i < rank; ++i) {
    if (i)
      s += ", ";
    s += shape[i] < 0 ? "?" : std::to_string(shape[i]);
  }
  return s + "]";
}

std::string NameList(const moert_tensor_desc *list, int32_t count) {
  std::string s;
  for (int32_t i = 0; i < count; ++i)
    s += (i ? ", " : "") + std::string(list[i].name);
  return s.empty() ? "none" : s;
}

void ListEntries(moert_model_t *model, const moert_weights_t *weights) {
  std::printf("model '%s' (target %s, model ABI %d, routing stats: %s)\n",
              moert_model_name(model), moert_model_target(model),
              MOERT_MODEL_ABI_VERSION,
              moert_model_has_stats(model) ? "yes" : "no");
  for (int32_t e = 0; e < moert_model_entry_count(model); ++e) {
    const moert_entry_desc *entry = moert_model_entry(model, e);
    std::printf("entry %s\n", entry->name);
    size_t width = 1;
    for (int32_t i = 0; i < entry->num_args; ++i)
      width = std::max(width, std::strlen(entry->args[i].name));
    for (int32_t i = 0; i < entry->num_results; ++i)
      width = std::max(width, std::strlen(entry->results[i].name));
    auto row = [&](const char *kind, const moert_tensor_desc &t,
                   const char *note) {
      std::printf("  %-6s %-*s  %-4s %s%s\n", kind, static_cast<int>(width),
                  t.name, moert_dtype_name(t.dtype),
                  ShapeString(t.rank, t.shape).c_str(), note);
    };
    for (int32_t i = 0; i < entry->num_args; ++i)
      row("arg", entry->args[i],
          weights && moert_weights_find(weights, entry->args[i].name)
              ? "  (from weights)"
              : "");
    for (int32_t i = 0; i < entry->num_results; ++i)
      row("result", entry->results[i], "");
  }
}

// Recursive, NumPy-like printing of an f32 / i32 / i64 tensor; tensors with
// more than 1000 elements show the first and last 3 entries of each axis.
class Printer {
public:
  Printer(const moert_tensor_t *t, bool summarize)
      : t_(t), rank_(moert_tensor_rank(t)), shape_(moert_tensor_shape(t)),
        summarize_(summarize) {}

  void Print() {
    if (rank_ == 0) {
      Element(0);
      std::printf("\n");
      return;
    }
    Rec(0, 0);
    std::printf("\n");
  }

private:
  void Element(int64_t index) {
    const void *data = moert_tensor_const_data(t_);
    switch (moert_tensor_dtype(t_)) {
    case MOERT_DTYPE_I32:
      std::printf("%" PRId32, static_cast<const int32_t *>(data)[index]);
      break;
    case MOERT_DTYPE_I64:
      std::printf("%" PRId64, static_cast<const int64_t *>(data)[index]);
      break;
    default:
      std::printf("%.7g", static_cast<double>(
                              static_cast<const float *>(data)[index]));
      break;
    }
  }

  void Rec(int32_t dim, int64_t offset) {
    int64_t n = shape_[dim];
    int64_t stride = 1;
    for (int32_t d = dim + 1; d < rank_; ++d)
      stride *= shape_[d];
    std::printf("[");
    bool cut = summarize_ && n > 6;
    for (int64_t i = 0; i < n; ++i) {
      if (cut && i == 3) {
        if (dim + 1 == rank_)
          std::printf(", ...");
        else
          std::printf(",\n%*s...", dim + 1, "");
        i = n - 4;
        continue;
      }
      if (i > 0) {
        if (dim + 1 == rank_)
          std::printf(", ");
        else
          std::printf(",\n%s%*s", rank_ - dim > 2 ? "\n" : "", dim + 1, "");
      }
      if (dim + 1 == rank_)
        Element(offset + i);
      else
        Rec(dim + 1, offset + i * stride);
    }
    std::printf("]");
  }

  const moert_tensor_t *t_;
  int32_t rank_;
  const int64_t *shape_;
  bool summarize_;
};

void PrintResult(const char *name, const moert_tensor_t *t) {
  std::printf("%s: %s %s\n", name, moert_dtype_name(moert_tensor_dtype(t)),
              ShapeString(moert_tensor_rank(t), moert_tensor_shape(t)).c_str());
  const moert_tensor_t *shown = t;
  moert_tensor_t *converted = nullptr;
  int32_t dtype = moert_tensor_dtype(t);
  if (dtype == MOERT_DTYPE_F16 || dtype == MOERT_DTYPE_BF16) {
    Check(moert_tensor_convert(t, MOERT_DTYPE_F32, &converted),
          std::string("printing result '") + name + "'");
    shown = converted;
  }
  Printer(shown, moert_tensor_element_count(t) > 1000).Print();
  moert_tensor_release(converted);
}

void WriteResult(const char *name, const moert_tensor_t *t,
                 const std::string &path) {
  if (moert_tensor_dtype(t) == MOERT_DTYPE_BF16) {
    moert_tensor_t *f32 = nullptr;
    Check(moert_tensor_convert(t, MOERT_DTYPE_F32, &f32));
    Note(std::string("result '") + name + "' is bf16; writing it as f32 to '" +
         path + "'");
    moert_status_t s = moert_npy_write(path.c_str(), f32);
    moert_tensor_release(f32);
    Check(s);
    return;
  }
  Check(moert_npy_write(path.c_str(), t));
}

// A file name for a result name (anything outside [A-Za-z0-9._-] becomes _).
std::string FileNameFor(const std::string &name) {
  std::string out;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    out += ok ? c : '_';
  }
  if (out.empty() || out == "." || out == "..")
    out = "_" + out;
  return out;
}

void MakeDirectories(const std::string &dir) {
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (partial.empty())
      continue;
    if (::mkdir(partial.c_str(), 0777) != 0 && errno != EEXIST)
      Fail("cannot create directory '" + partial + "': " +
           std::strerror(errno));
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    Fail("'" + dir + "' is not a directory");
}

void WriteStats(const moert_session_t *session, moert_model_t *model,
                const std::string &path) {
  if (!moert_model_has_stats(model))
    Note("the model library reports no routing statistics; '" + path +
         "' will have no layers");
  char *json = nullptr;
  Check(moert_session_stats_json(session, &json));
  FILE *f = std::fopen(path.c_str(), "w");
  if (!f) {
    moert_free(json);
    Fail("cannot create '" + path + "': " + std::strerror(errno));
  }
  size_t n = std::strlen(json);
  bool ok = std::fwrite(json, 1, n, f) == n;
  moert_free(json);
  if (std::fclose(f) != 0 || !ok)
    Fail("cannot write '" + path + "': " + std::strerror(errno));
}

struct Results {
  std::vector<moert_tensor_t *> tensors;
  explicit Results(int32_t n) : tensors(static_cast<size_t>(n), nullptr) {}
  ~Results() { Clear(); }
  void Clear() {
    for (moert_tensor_t *&t : tensors) {
      moert_tensor_release(t);
      t = nullptr;
    }
  }
};

// A model library bound for calls: the library, its weights, the entry
// point, the inputs converted to the entry's dtypes and a session.
struct Bound {
  moert_model_t *model = nullptr;
  moert_weights_t *weights = nullptr;
  int32_t entry_index = 0;
  const moert_entry_desc *entry = nullptr;
  std::vector<moert_tensor_t *> input_tensors;
  std::vector<moert_named_tensor> inputs;
  moert_session_t *session = nullptr;
  bool owns_session = true; // false: another Bound's session (--compare-input)

  Bound() = default;
  Bound(const Bound &) = delete;
  Bound &operator=(const Bound &) = delete;
  ~Bound() {
    if (owns_session)
      moert_session_release(session);
    for (moert_tensor_t *t : input_tensors)
      moert_tensor_release(t);
    moert_weights_release(weights);
    moert_model_release(model);
  }

  moert_status_t Call(Results &results) {
    return moert_session_call(session, inputs.data(), inputs.size(),
                              results.tensors.data(), entry->num_results);
  }
};

// Loads the library at `path` (checked against --device) and, if given, its
// weights.
void LoadModel(Bound &b, const Options &o, const std::string &path,
               const std::string &weights) {
  Check(moert_model_load(path.c_str(), &b.model));
  if (!o.device.empty() && o.device != moert_model_target(b.model))
    Fail("the model library '" + path + "' was compiled for " +
         moert_model_target(b.model) + ", not " + o.device +
         " (moe-compile --target=" + o.device + ")");
  if (!weights.empty())
    Check(moert_weights_load_safetensors_ex(
        weights.c_str(), o.list ? MOERT_WEIGHTS_MAP : o.placement, &b.weights));
}

// Chooses the entry point `name` ("" = the only one) of a loaded library;
// errors start with `context` if it is not empty.
void ChooseEntry(Bound &b, const std::string &name,
                 const std::string &context = "") {
  if (!name.empty()) {
    Check(moert_model_find_entry(b.model, name.c_str(), &b.entry_index),
          context);
  } else if (moert_model_entry_count(b.model) != 1) {
    Fail("model '" + std::string(moert_model_name(b.model)) + "' has " +
         std::to_string(moert_model_entry_count(b.model)) +
         " entry points; choose one with --entry (see --list)");
  }
  b.entry = moert_model_entry(b.model, b.entry_index);
}

// Reads the input files (NAME, path), converting floats to the arguments'
// float dtypes; errors name `flag`.
void BindInputs(Bound &b,
                const std::vector<std::pair<std::string, std::string>> &files,
                const std::string &flag = "--input") {
  const moert_entry_desc *entry = b.entry;
  for (const auto &[name, path] : files) {
    int32_t arg = moert_entry_find_arg(entry, name.c_str());
    if (arg < 0)
      Fail(flag + " '" + name + "': entry '" + entry->name +
           "' has no such argument (arguments: " +
           NameList(entry->args, entry->num_args) + ")");
    moert_tensor_t *t = nullptr;
    Check(moert_npy_read(path.c_str(), &t), flag + " '" + name + "'");
    b.input_tensors.push_back(t);
    int32_t want = entry->args[arg].dtype;
    int32_t have = moert_tensor_dtype(t);
    if (have != want) {
      if (!moert_dtype_is_float(have) || !moert_dtype_is_float(want))
        Fail(flag + " '" + name + "': '" + path + "' holds " +
             moert_dtype_name(have) + " but argument '" + name + "' is " +
             moert_dtype_name(want));
      moert_tensor_t *converted = nullptr;
      Check(moert_tensor_convert(t, want, &converted),
            flag + " '" + name + "'");
      moert_tensor_release(t);
      b.input_tensors.back() = converted;
    }
  }
  for (size_t i = 0; i < files.size(); ++i)
    b.inputs.push_back({files[i].first.c_str(), b.input_tensors[i]});
}

// Reads the --input files and creates the session (threads and packed
// weights as the options say).
void BindInputsAndCreateSession(Bound &b, const Options &o) {
  BindInputs(b, o.inputs);
  Check(moert_session_create(b.model, b.entry_index, b.weights, &b.session));
  Check(moert_session_set_num_threads(b.session, o.threads));
  if (o.packed_mb >= 0)
    Check(moert_session_set_packed_weights_limit(b.session, o.packed_mb << 20));
}

// Times calls of bound models (--time, --cold).
class Timer {
public:
  explicit Timer(bool cold)
      : cold_(cold), evict_(cold ? (size_t(256) << 20) / 8 : 0, 1) {}
  ~Timer() {
    // Keep the eviction loop observable so it is not optimised away.
    asm volatile("" : : "r"(evict_sum_));
  }

  // One timed call of b (results discarded), in milliseconds.
  double TimedCall(Bound &b, int64_t index, const char *what) {
    // --cold: read a buffer far larger than any last-level cache between
    // calls (untimed), so nothing the call used stays cached. Only read: the
    // dirty lines a written sweep leaves behind would be written back during
    // the timed call, charging it for the sweep's traffic. The buffer may
    // have changed, as far as the compiler knows: every call reads it again.
    asm volatile("" : : "r"(evict_.data()) : "memory");
    for (uint64_t v : evict_)
      evict_sum_ += v;
    // The sweep alone leaves weights that every call reuses in the
    // last-level cache (its replacement policy protects them); flush them.
    if (cold_)
      moert_session_evict_weights(b.session);
    Results scratch(b.entry->num_results);
    auto start = std::chrono::steady_clock::now();
    moert_status_t s = b.Call(scratch);
    auto end = std::chrono::steady_clock::now();
    Check(s, std::string(what) + "timed call " + std::to_string(index + 1));
    return std::chrono::duration<double, std::milli>(end - start).count();
  }

private:
  bool cold_;
  std::vector<uint64_t> evict_;
  uint64_t evict_sum_ = 0;
};

// "mean X ms, min Y ms per call" of a series of call times.
std::string MeanMin(const std::vector<double> &ms) {
  double total = 0, lo = ms.front();
  for (double v : ms) {
    total += v;
    lo = std::min(lo, v);
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "mean %.4f ms, min %.4f ms per call",
                total / static_cast<double>(ms.size()), lo);
  return buf;
}

} // namespace

int main(int argc, char **argv) {
  Options o = ParseOptions(argc, argv);

  // --device: check the device first, so a missing driver is reported as
  // such rather than as a library that failed to load.
  if (!o.device.empty())
    Check(moert_device_init(static_cast<moert_device_kind_t>(
        moert_device_kind_from_name(o.device.c_str()))));
  Bound run;
  LoadModel(run, o, o.model, o.weights);

  if (o.list) {
    ListEntries(run.model, run.weights);
    return 0;
  }

  ChooseEntry(run, o.entry);
  const moert_entry_desc *entry = run.entry;

  // Outputs must name results.
  for (const auto &[name, path] : o.outputs)
    if (moert_entry_find_result(entry, name.c_str()) < 0)
      Fail("--output '" + name + "': entry '" + entry->name +
           "' has no such result (results: " +
           NameList(entry->results, entry->num_results) + ")");

  BindInputsAndCreateSession(run, o);

  // --compare-model / --compare-weights: the model timed against this one,
  // bound to the same entry name and inputs. --compare-input: this model's
  // own session, called with other inputs.
  const bool compare = o.Compare();
  Bound against;
  std::vector<std::pair<std::string, std::string>> compare_files = o.inputs;
  for (auto &in : compare_files)
    for (const auto &[name, path] : o.compare_inputs)
      if (in.first == name)
        in.second = path;
  if (!o.compare_inputs.empty()) {
    against.entry = entry;
    BindInputs(against, compare_files, "--compare-input");
    against.session = run.session;
    against.owns_session = false;
  } else if (compare) {
    const std::string &path = o.compare_model.empty() ? o.model : o.compare_model;
    LoadModel(against, o, path,
              o.compare_weights.empty() ? o.weights : o.compare_weights);
    ChooseEntry(against, entry->name, "--compare-model '" + path + "'");
    BindInputsAndCreateSession(against, o);
  }

  for (int64_t i = 0; i < o.warm_calls; ++i) {
    Results warm(entry->num_results);
    Check(run.Call(warm), "warm call " + std::to_string(i + 1));
  }
  moert_session_stats_reset(run.session);

  Results results(entry->num_results);
  Check(run.Call(results));

  // Statistics of this call, the one whose results are written (timed calls
  // repeat it with the same inputs).
  if (!o.stats.empty())
    WriteStats(run.session, run.model, o.stats);

  if (o.time_calls > 0) {
    // Timed calls measure the model, not the statistics bookkeeping.
    moert_session_set_stats_enabled(run.session, 0);
    if (compare) {
      // The compared model gets the same warm-up as this one.
      moert_session_set_stats_enabled(against.session, 0);
      for (int64_t i = 0; i <= o.warm_calls; ++i) {
        Results warm(against.entry->num_results);
        Check(against.Call(warm), "compared model: warm-up call");
      }
    }
    Timer timer(o.cold);
    std::vector<double> ms, against_ms, ratios;
    for (int64_t i = 0; i < o.time_calls; ++i) {
      // With a compared model, each round calls both, the order flipping
      // every round, so neither is always the one that runs first.
      if (compare && i % 2 == 1)
        against_ms.push_back(timer.TimedCall(against, i, "compared model: "));
      ms.push_back(timer.TimedCall(run, i, ""));
      if (compare && i % 2 == 0)
        against_ms.push_back(timer.TimedCall(against, i, "compared model: "));
      if (compare)
        ratios.push_back(ms.back() / against_ms.back());
    }
    const char *cold = o.cold ? " (cold caches)" : "";
    std::printf("time: %s, %" PRId64 " calls after 1 warm-up%s: %s\n",
                entry->name, o.time_calls, cold, MeanMin(ms).c_str());
    if (compare) {
      std::sort(ratios.begin(), ratios.end());
      std::printf("compare time: %s, %" PRId64 " calls after 1 warm-up%s: %s\n",
                  entry->name, o.time_calls, cold, MeanMin(against_ms).c_str());
      std::printf("compare ratio: model / compare per round: median %.4f, "
                  "range %.4f-%.4f over %" PRId64 " rounds\n",
                  ratios[ratios.size() / 2], ratios.front(), ratios.back(),
                  o.time_calls);
    }
    const int64_t kept = moert_session_packed_weights_bytes(run.session);
    std::printf("packed weights kept: %.1f MiB (%" PRId64
                " bytes; limit %.1f MiB)\n",
                static_cast<double>(kept) / (1 << 20), kept,
                static_cast<double>(
                    moert_session_packed_weights_limit(run.session)) /
                    (1 << 20));
  }

  for (int32_t r = 0; r < entry->num_results; ++r) {
    const char *name = entry->results[r].name;
    const moert_tensor_t *t = results.tensors[static_cast<size_t>(r)];
    if (o.print)
      PrintResult(name, t);
    else if (o.time_calls == 0)
      std::printf("%s: %s %s\n", name, moert_dtype_name(moert_tensor_dtype(t)),
                  ShapeString(moert_tensor_rank(t), moert_tensor_shape(t))
                      .c_str());
  }
  for (const auto &[name, path] : o.outputs)
    WriteResult(name.c_str(),
                results.tensors[static_cast<size_t>(
                    moert_entry_find_result(entry, name.c_str()))],
                path);
  if (!o.output_dir.empty()) {
    MakeDirectories(o.output_dir);
    for (int32_t r = 0; r < entry->num_results; ++r) {
      const char *name = entry->results[r].name;
      WriteResult(name, results.tensors[static_cast<size_t>(r)],
                  o.output_dir + "/" + FileNameFor(name) + ".npy");
    }
  }
  return 0;
}
