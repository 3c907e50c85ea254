//===- session.cc - binding, validation, invocation, statistics -----------===//

#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <memory>
#include <vector>

#if defined(__x86_64__)
#include <emmintrin.h> // _mm_clflush, _mm_mfence
#endif

#include "model_internal.h"
#include "cache_lines.h"
#include "thread_pool.h"
#include "weight_cache.h"

namespace {

using moert::StrFormat;

// An argument bound from the weights at session creation.
struct BoundWeight {
  bool bound = false;
  const void *data = nullptr; // borrowed from the weights, or session-owned
  int32_t dtype = 0;
  int32_t rank = 0;
  int64_t shape[MOERT_MAX_RANK] = {};
  size_t bytes = 0;
};

struct LayerAccum {
  int64_t num_experts = 0;
  std::vector<int64_t> tokens;
  std::vector<double> gate_mass; // summed over calls; empty if never reported
  std::vector<double> importance; // likewise
  int64_t reports = 0, pairs = 0, dropped = 0, skipped = 0;
};

// What the model reported during one invoke.
struct DispatchRecord {
  int64_t num_experts;
  std::vector<int64_t> counts;
  std::vector<float> gate_mass; // empty unless the model reported it
  std::vector<float> importance; // likewise
  int64_t pairs, dropped, skipped;
};

// The records of one call: records[0, used). Records past `used` are kept
// from earlier calls so that their vectors' storage is reused.
struct CallStats {
  std::vector<DispatchRecord> records;
  size_t used = 0;
  std::string error; // non-empty: the model reported nonsense

  void Reset() {
    used = 0;
    error.clear();
  }
};

// A candidate value for one argument.
struct ArgRef {
  const void *data = nullptr;
  int32_t dtype = 0;
  int32_t rank = 0;
  const int64_t *shape = nullptr;
  size_t bytes = 0;
  const char *source = ""; // "input" or "weight"
};

// A span of memory [begin, end).
struct Range {
  uintptr_t begin, end;
};

// Upper bound on the experts of one layer that we accept from a model.
constexpr int64_t kMaxExperts = int64_t(1) << 24;

int64_t SatAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    return std::numeric_limits<int64_t>::max();
  return r;
}

} // namespace

// The argument list and result bookkeeping of one call, kept by the session
// so that a call allocates nothing for them once the first has sized them
// (a session is used from one thread at a time).
struct CallScratch {
  std::vector<ArgRef> refs;         // each argument's candidate value
  std::vector<char> have;           // given as an input
  std::vector<moert_view> args;     // what invoke receives
  std::vector<Range> arg_ranges;    // memory the arguments occupy
  std::vector<moert_view> results;  // what invoke returns
  std::vector<char> owner, adopted; // per result: frees / handed to a tensor
  CallStats stats;                  // what the model reports
};

struct moert_session_s {
  moert_model_t *model = nullptr;
  moert_weights_t *weights = nullptr;
  int32_t entry_index = 0;
  const moert_entry_desc *entry = nullptr;
  std::vector<BoundWeight> bound;            // one per argument
  std::vector<moert::AlignedBuffer> buffers; // converted / realigned weights
  std::vector<void *> device_buffers;        // weights copied to the GPU
  bool collect_stats = true;
  std::vector<LayerAccum> layers;
  int64_t calls = 0;
  // Worker threads for the model's kernels (all cores unless set).
  std::unique_ptr<moert::ThreadPool> pool =
      std::make_unique<moert::ThreadPool>(moert::ThreadPool::HardwareThreads());
  // Packed copies of the bound weights kept by the model's kernels (CPU
  // sessions; NULL for one-shot calls and device sessions).
  std::unique_ptr<moert::WeightCache> weight_cache;
  CallScratch call; // kept between calls

  ~moert_session_s() {
    for (void *p : device_buffers)
      moert_device_free(p);
    if (model && model->device != MOERT_DEVICE_CPU)
      moert_device_trim(); // blocks kept for reuse go back to the driver

    moert_weights_release(weights);
    moert_model_release(model);
  }
};

namespace {

// The kernels' parallel hook, backed by the session's pool.
void RunParallelFor(void *user, int64_t n, moert_task_fn fn, void *arg) {
  static_cast<moert::ThreadPool *>(user)->ParallelFor(n, fn, arg);
}

std::string EntryWhat(const moert_entry_desc *entry) {
  return StrFormat("entry '%s'", entry->name);
}

std::string ArgList(const moert_entry_desc *entry) {
  std::string s;
  for (int32_t i = 0; i < entry->num_args; ++i)
    s += (i ? ", " : "") + std::string(entry->args[i].name);
  return s.empty() ? "none" : s;
}

// "entry 'E': argument 'A' (input)", the start of an argument's errors.
// Only built for an error: formatting it for every argument of every call
// cost a decode call about 15 microseconds with cold caches.
std::string ArgWhat(const moert_entry_desc *entry, const moert_tensor_desc &d,
                    const ArgRef &ref) {
  return EntryWhat(entry) +
         StrFormat(": argument '%s' (%s)", d.name, ref.source);
}

// Rank and static dimensions of `ref` against argument `d`.
moert_status_t CheckStaticShape(const moert_entry_desc *entry,
                                const moert_tensor_desc &d, const ArgRef &ref) {
  if (ref.rank != d.rank)
    return moert::MakeStatus(
        MOERT_STATUS_INVALID_ARGUMENT,
        ArgWhat(entry, d, ref) +
            StrFormat(" has rank %d (shape %s), expected rank %d (shape %s)",
                      static_cast<int>(ref.rank),
                      moert::ShapeString(ref.rank, ref.shape).c_str(),
                      static_cast<int>(d.rank),
                      moert::ShapeString(d.rank, d.shape).c_str()));
  for (int32_t i = 0; i < d.rank; ++i)
    if (d.shape[i] >= 0 && ref.shape[i] != d.shape[i])
      return moert::MakeStatus(
          MOERT_STATUS_INVALID_ARGUMENT,
          ArgWhat(entry, d, ref) +
              StrFormat(" has shape %s, expected %s: dimension %d is %lld, "
                        "expected %lld",
                        moert::ShapeString(ref.rank, ref.shape).c_str(),
                        moert::ShapeString(d.rank, d.shape).c_str(),
                        static_cast<int>(i),
                        static_cast<long long>(ref.shape[i]),
                        static_cast<long long>(d.shape[i])));
  return nullptr;
}

// Full check of one argument; tracks the token count T across arguments.
struct TokenCount {
  int64_t value = -1;
  const char *arg = nullptr;
  int32_t dim = -1;
};

moert_status_t CheckArg(const moert_entry_desc *entry, int32_t j,
                        const ArgRef &ref, TokenCount *t) {
  const moert_tensor_desc &d = entry->args[j];
  MOERT_RETURN_IF_ERROR(CheckStaticShape(entry, d, ref));
  if (ref.dtype != d.dtype)
    return moert::MakeStatus(
        MOERT_STATUS_INVALID_ARGUMENT,
        ArgWhat(entry, d, ref) +
            StrFormat(" has dtype %s, expected %s (inputs are not "
                      "converted)",
                      moert_dtype_name(ref.dtype), moert_dtype_name(d.dtype)));
  for (int32_t i = 0; i < d.rank; ++i) {
    if (d.shape[i] >= 0)
      continue;
    int64_t v = ref.shape[i];
    if (v < 1)
      return moert::MakeStatus(
          MOERT_STATUS_INVALID_ARGUMENT,
          ArgWhat(entry, d, ref) +
              StrFormat(" has shape %s: dynamic dimension %d (the token "
                        "count T) is %lld but must be >= 1",
                        moert::ShapeString(ref.rank, ref.shape).c_str(),
                        static_cast<int>(i), static_cast<long long>(v)));
    if (t->value < 0) {
      t->value = v;
      t->arg = d.name;
      t->dim = i;
    } else if (v != t->value) {
      return moert::MakeStatus(
          MOERT_STATUS_INVALID_ARGUMENT,
          ArgWhat(entry, d, ref) +
              StrFormat(" has shape %s: dynamic dimension %d is %lld, but "
                        "the token count T is %lld (dimension %d of "
                        "argument '%s')",
                        moert::ShapeString(ref.rank, ref.shape).c_str(),
                        static_cast<int>(i), static_cast<long long>(v),
                        static_cast<long long>(t->value),
                        static_cast<int>(t->dim), t->arg));
    }
  }
  return nullptr;
}

// Binds every argument found in `weights` (see moert_session_create).
/// `bytes` of host data in a fresh device buffer (moert_device_upload).
moert_status_t ToDevice(const void *data, size_t bytes, const char *what,
                        void **out) {
  *out = moert_device_alloc(bytes);
  if (!*out) {
    moert::StatusPtr reason(moert_device_status());
    return moert::MakeStatus(
        MOERT_STATUS_RESOURCE_EXHAUSTED,
        StrFormat("cannot place %s (%zu bytes) in device memory: ", what,
                  bytes) +
            (reason.get() ? moert_status_message(reason.get())
                          : "no device"));
  }
  moert_device_upload(*out, data, bytes);
  return nullptr;
}

/// GPU models read every argument from device memory: the bound weights are
/// copied there once per session.
moert_status_t UploadWeights(moert_session_s *s) {
  for (size_t j = 0; j < s->bound.size(); ++j) {
    BoundWeight &b = s->bound[j];
    if (!b.bound)
      continue;
    void *p = nullptr;
    MOERT_RETURN_IF_ERROR(ToDevice(b.data, b.bytes, s->entry->args[j].name, &p));
    s->device_buffers.push_back(p);
    b.data = p;
  }
  // The converted / realigned host copies are no longer read.
  s->buffers.clear();
  return nullptr;
}

moert_status_t BindWeights(moert_session_s *s) {
  const moert_entry_desc *entry = s->entry;
  s->bound.assign(static_cast<size_t>(entry->num_args), BoundWeight());
  if (!s->weights)
    return nullptr;
  for (int32_t j = 0; j < entry->num_args; ++j) {
    const moert_tensor_desc &d = entry->args[j];
    const moert_tensor_t *w = moert_weights_find(s->weights, d.name);
    if (!w)
      continue;
    ArgRef ref;
    ref.data = moert_tensor_const_data(w);
    ref.dtype = moert_tensor_dtype(w);
    ref.rank = moert_tensor_rank(w);
    ref.shape = moert_tensor_shape(w);
    ref.bytes = moert_tensor_byte_size(w);
    ref.source = "weight";
    MOERT_RETURN_IF_ERROR(CheckStaticShape(entry, d, ref));
    BoundWeight &b = s->bound[static_cast<size_t>(j)];
    b.bound = true;
    b.dtype = d.dtype;
    b.rank = ref.rank;
    for (int32_t i = 0; i < ref.rank; ++i)
      b.shape[i] = ref.shape[i];
    size_t count = static_cast<size_t>(moert_tensor_element_count(w));
    bool aligned =
        reinterpret_cast<uintptr_t>(ref.data) % moert_dtype_size(ref.dtype) == 0;
    if (ref.dtype == d.dtype && aligned) {
      b.data = ref.data;
      b.bytes = ref.bytes;
      continue;
    }
    if (ref.dtype != d.dtype &&
        !(moert_dtype_is_float(ref.dtype) && moert_dtype_is_float(d.dtype)))
      return moert::MakeStatus(
          MOERT_STATUS_INVALID_ARGUMENT,
          EntryWhat(entry) +
              StrFormat(": weight '%s' has dtype %s but the argument expects "
                        "%s (only f32, f16 and bf16 weights are converted)",
                        d.name, moert_dtype_name(ref.dtype),
                        moert_dtype_name(d.dtype)));
    size_t bytes = count * moert_dtype_size(d.dtype);
    moert::AlignedBuffer buffer(moert::LargeAlloc(bytes));
    if (!buffer)
      return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                               "out of memory converting weight '%s' (%zu "
                               "bytes)",
                               d.name, bytes);
    if (ref.dtype == d.dtype) {
      if (bytes)
        std::memcpy(buffer.get(), ref.data, bytes); // realign
    } else if (aligned) {
      MOERT_RETURN_IF_ERROR(moert_convert_floats(ref.dtype, ref.data, d.dtype,
                                                 buffer.get(), count));
    } else {
      // Misaligned and of another dtype: realign first, then convert.
      moert::AlignedBuffer tmp(moert::AlignedAlloc(ref.bytes));
      if (!tmp)
        return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                                 "out of memory converting weight '%s'",
                                 d.name);
      std::memcpy(tmp.get(), ref.data, ref.bytes);
      MOERT_RETURN_IF_ERROR(moert_convert_floats(ref.dtype, tmp.get(), d.dtype,
                                                 buffer.get(), count));
    }
    b.data = buffer.get();
    b.bytes = bytes;
    s->buffers.push_back(std::move(buffer));
  }
  return s->model->device == MOERT_DEVICE_CPU ? nullptr : UploadWeights(s);
}

void OnDispatch(void *user, int64_t num_experts, const int32_t *counts,
                int64_t num_pairs, int64_t dropped, int64_t skipped) {
  auto *cs = static_cast<CallStats *>(user);
  if (!cs->error.empty())
    return;
  try {
    size_t layer = cs->used;
    if (num_experts < 0 || num_experts > kMaxExperts || num_pairs < 0 ||
        dropped < 0 || skipped < 0 || (num_experts > 0 && !counts)) {
      cs->error = StrFormat("the model reported invalid statistics for layer "
                            "%zu (num_experts %lld, pairs %lld, dropped %lld, "
                            "skipped %lld%s)",
                            layer, static_cast<long long>(num_experts),
                            static_cast<long long>(num_pairs),
                            static_cast<long long>(dropped),
                            static_cast<long long>(skipped),
                            num_experts > 0 && !counts ? ", NULL counts" : "");
      return;
    }
    if (cs->records.size() == layer)
      cs->records.emplace_back();
    DispatchRecord &r = cs->records[layer];
    r.num_experts = num_experts;
    r.counts.resize(static_cast<size_t>(num_experts));
    r.gate_mass.clear();
    r.importance.clear();
    for (int64_t e = 0; e < num_experts; ++e) {
      if (counts[e] < 0) {
        cs->error = StrFormat("the model reported a negative token count (%d) "
                              "for expert %lld of layer %zu",
                              static_cast<int>(counts[e]),
                              static_cast<long long>(e), layer);
        return;
      }
      r.counts[static_cast<size_t>(e)] = counts[e];
    }
    r.pairs = num_pairs;
    r.dropped = dropped;
    r.skipped = skipped;
    cs->used = layer + 1;
  } catch (...) {
    cs->error = "out of memory recording statistics";
  }
}

// Attaches per-expert values the model reports after a dispatch (`what`
// names them in the error) to that dispatch's record.
void OnPerExpert(void *user, int64_t num_experts, const float *values,
                 std::vector<float> DispatchRecord::*field, const char *what) {
  auto *cs = static_cast<CallStats *>(user);
  if (!cs->error.empty() || cs->used == 0)
    return;
  DispatchRecord &r = cs->records[cs->used - 1];
  if (num_experts != r.num_experts || (num_experts > 0 && !values)) {
    cs->error = std::string("the model reported ") + what +
                " that does not match its dispatch";
    return;
  }
  try {
    (r.*field).assign(values, values + num_experts);
  } catch (...) {
    cs->error = "out of memory recording statistics";
  }
}

void OnGateMass(void *user, int64_t num_experts, const float *gate_mass) {
  OnPerExpert(user, num_experts, gate_mass, &DispatchRecord::gate_mass,
              "a gate mass");
}

void OnImportance(void *user, int64_t num_experts, const float *importance) {
  OnPerExpert(user, num_experts, importance, &DispatchRecord::importance,
              "an expert importance");
}

// Adds one call's records to the session; leaves it unchanged on error.
moert_status_t MergeStats(moert_session_s *s, const CallStats &cs) {
  if (!cs.error.empty())
    return moert::MakeStatus(MOERT_STATUS_INTERNAL,
                             EntryWhat(s->entry) + ": " + cs.error);
  for (size_t k = 0; k < cs.used && k < s->layers.size(); ++k)
    if (s->layers[k].num_experts != cs.records[k].num_experts)
      return moert::MakeStatus(
          MOERT_STATUS_INTERNAL,
          EntryWhat(s->entry) +
              StrFormat(": the model reported %lld experts for layer %zu, but "
                        "%lld in earlier calls",
                        static_cast<long long>(cs.records[k].num_experts), k,
                        static_cast<long long>(s->layers[k].num_experts)));
  try {
    for (size_t k = s->layers.size(); k < cs.used; ++k) {
      LayerAccum layer;
      layer.num_experts = cs.records[k].num_experts;
      layer.tokens.assign(static_cast<size_t>(layer.num_experts), 0);
      s->layers.push_back(std::move(layer));
    }
  } catch (const std::bad_alloc &) {
    return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                             "out of memory recording statistics");
  }
  for (size_t k = 0; k < cs.used; ++k) {
    LayerAccum &l = s->layers[k];
    const DispatchRecord &r = cs.records[k];
    for (size_t e = 0; e < r.counts.size(); ++e)
      l.tokens[e] = SatAdd(l.tokens[e], r.counts[e]);
    if (!r.gate_mass.empty()) {
      if (l.gate_mass.size() != r.gate_mass.size())
        l.gate_mass.assign(r.gate_mass.size(), 0.0);
      for (size_t e = 0; e < r.gate_mass.size(); ++e)
        l.gate_mass[e] += r.gate_mass[e];
    }
    if (!r.importance.empty()) {
      if (l.importance.size() != r.importance.size())
        l.importance.assign(r.importance.size(), 0.0);
      for (size_t e = 0; e < r.importance.size(); ++e)
        l.importance[e] += r.importance[e];
    }
    l.reports = SatAdd(l.reports, 1);
    l.pairs = SatAdd(l.pairs, r.pairs);
    l.dropped = SatAdd(l.dropped, r.dropped);
    l.skipped = SatAdd(l.skipped, r.skipped);
  }
  return nullptr;
}

const char *AbiCodeName(int rc) {
  switch (rc) {
  case MOERT_ABI_BAD_RANK: return "MOERT_ABI_BAD_RANK";
  case MOERT_ABI_BAD_DTYPE: return "MOERT_ABI_BAD_DTYPE";
  case MOERT_ABI_BAD_SHAPE: return "MOERT_ABI_BAD_SHAPE";
  case MOERT_ABI_NULL_DATA: return "MOERT_ABI_NULL_DATA";
  default: return "an unknown code";
  }
}

bool InsideAny(const void *p, const std::vector<Range> &ranges) {
  auto a = reinterpret_cast<uintptr_t>(p);
  for (const Range &r : ranges)
    if (a >= r.begin && a < r.end)
      return true;
  return false;
}

void FreeModelResult(void *user, void *allocated) {
  auto *model = static_cast<moert_model_t *>(user);
  model->desc->free_result(allocated);
  moert_model_release(model);
}

// Checks result `r` against its description.
moert_status_t CheckResult(const moert_entry_desc *entry, int32_t r,
                           const moert_view &v, int64_t T) {
  const moert_tensor_desc &d = entry->results[r];
  // Formatted for an error only (see ArgWhat).
  auto who = [&] {
    return EntryWhat(entry) + StrFormat(": result '%s'", d.name);
  };
  if (v.rank != d.rank || v.dtype != d.dtype)
    return moert::MakeStatus(
        MOERT_STATUS_INTERNAL,
        who() + StrFormat(" came back with rank %d and dtype %s, described as "
                          "rank %d and dtype %s",
                          static_cast<int>(v.rank), moert_dtype_name(v.dtype),
                          static_cast<int>(d.rank), moert_dtype_name(d.dtype)));
  for (int32_t i = 0; i < d.rank; ++i) {
    int64_t want = d.shape[i] >= 0 ? d.shape[i] : T;
    if (v.shape[i] != want)
      return moert::MakeStatus(
          MOERT_STATUS_INTERNAL,
          who() + StrFormat(" came back with shape %s, expected %s with T = "
                            "%lld",
                            moert::ShapeString(v.rank, v.shape).c_str(),
                            moert::ShapeString(d.rank, d.shape).c_str(),
                            static_cast<long long>(T)));
  }
  size_t bytes;
  if (moert_status_t st =
          moert::CheckShape(v.dtype, v.rank, v.shape, nullptr, &bytes))
    return moert::Annotate(st, who());
  if (!v.data && bytes > 0)
    return moert::MakeStatus(MOERT_STATUS_INTERNAL,
                             who() + " came back with NULL data");
  return nullptr;
}

// The marker MLIR stores as the allocated pointer of memref.get_global.
const void *const kMlirGlobalMarker = reinterpret_cast<const void *>(0xdeadbeef);

moert_status_t Call(moert_session_s *s, const moert_named_tensor *inputs,
                    size_t num_inputs, moert_tensor_t **out_results,
                    int32_t num_results) {
  const moert_entry_desc *entry = s->entry;
  if (num_results != entry->num_results)
    return moert::MakeStatus(
        MOERT_STATUS_INVALID_ARGUMENT,
        EntryWhat(entry) + StrFormat(" has %d results but num_results is %d",
                                     static_cast<int>(entry->num_results),
                                     static_cast<int>(num_results)));
  if (num_results > 0 && !out_results)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_results is NULL");
  for (int32_t r = 0; r < num_results; ++r)
    out_results[r] = nullptr;
  if (num_inputs > 0 && !inputs)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "inputs is NULL but num_inputs is %zu",
                             num_inputs);

  // The call's kernels will hand work to the pool: have its workers up and
  // spinning by the time they do (a blocked worker takes tens of
  // microseconds to wake, which a decode call's first job would wait for).
  if (s->model->device == MOERT_DEVICE_CPU && s->model->set_parallel_hook)
    s->pool->Wake();

  const size_t nargs = static_cast<size_t>(entry->num_args);
  CallScratch &cs = s->call;
  std::vector<ArgRef> &refs = cs.refs;
  std::vector<char> &have = cs.have;
  refs.assign(nargs, ArgRef());
  have.assign(nargs, 0);
  for (size_t i = 0; i < num_inputs; ++i) {
    const moert_named_tensor &in = inputs[i];
    if (!in.name || !in.tensor)
      return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                               "input %zu has a NULL name or tensor", i);
    int32_t j = moert_entry_find_arg(entry, in.name);
    if (j < 0)
      return moert::MakeStatus(
          MOERT_STATUS_INVALID_ARGUMENT,
          EntryWhat(entry) +
              StrFormat(": input '%s' is not an argument (arguments: %s)",
                        in.name, ArgList(entry).c_str()));
    if (have[static_cast<size_t>(j)])
      return moert::MakeStatus(MOERT_STATUS_INVALID_ARGUMENT,
                               EntryWhat(entry) +
                                   StrFormat(": input '%s' is given twice",
                                             in.name));
    have[static_cast<size_t>(j)] = 1;
    ArgRef &ref = refs[static_cast<size_t>(j)];
    ref.data = moert_tensor_const_data(in.tensor);
    ref.dtype = moert_tensor_dtype(in.tensor);
    ref.rank = moert_tensor_rank(in.tensor);
    ref.shape = moert_tensor_shape(in.tensor);
    ref.bytes = moert_tensor_byte_size(in.tensor);
    ref.source = "input";
  }
  for (size_t j = 0; j < nargs; ++j) {
    if (have[j])
      continue;
    const BoundWeight &b = s->bound[j];
    if (!b.bound)
      return moert::MakeStatus(
          MOERT_STATUS_NOT_FOUND,
          EntryWhat(entry) +
              StrFormat(": missing argument '%s': not given as an input%s",
                        entry->args[j].name,
                        s->weights ? " and not in the weights"
                                   : " (and no weights were given)"));
    ArgRef &ref = refs[j];
    ref.data = b.data;
    ref.dtype = b.dtype;
    ref.rank = b.rank;
    ref.shape = b.shape;
    ref.bytes = b.bytes;
    ref.source = "weight";
  }

  TokenCount T;
  for (size_t j = 0; j < nargs; ++j)
    MOERT_RETURN_IF_ERROR(
        CheckArg(entry, static_cast<int32_t>(j), refs[j], &T));

  // GPU models: explicit inputs are copied into device buffers for the call.
  const bool on_device = s->model->device != MOERT_DEVICE_CPU;
  struct DeviceScratch {
    std::vector<void *> blocks;
    ~DeviceScratch() {
      for (void *p : blocks)
        moert_device_free(p);
    }
  } device_scratch;
  if (on_device) {
    for (size_t j = 0; j < nargs; ++j) {
      if (!have[j])
        continue; // bound weights are device buffers already
      void *p = nullptr;
      MOERT_RETURN_IF_ERROR(
          ToDevice(refs[j].data, refs[j].bytes, entry->args[j].name, &p));
      device_scratch.blocks.push_back(p);
      refs[j].data = p;
    }
  }

  // Views; misaligned explicit inputs are copied into aligned buffers.
  std::vector<moert::AlignedBuffer> realigned;
  std::vector<moert_view> &args = cs.args;
  std::vector<Range> &arg_ranges = cs.arg_ranges;
  args.resize(nargs);
  arg_ranges.clear();
  for (size_t j = 0; j < nargs; ++j) {
    const ArgRef &ref = refs[j];
    const void *data = ref.data;
    if (reinterpret_cast<uintptr_t>(data) % moert_dtype_size(ref.dtype) != 0) {
      moert::AlignedBuffer copy(moert::AlignedAlloc(ref.bytes));
      if (!copy)
        return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                                 "out of memory realigning input '%s'",
                                 entry->args[j].name);
      std::memcpy(copy.get(), data, ref.bytes);
      data = copy.get();
      realigned.push_back(std::move(copy));
    }
    moert_view &v = args[j];
    std::memset(&v, 0, sizeof v);
    v.data = const_cast<void *>(data);
    v.allocated = nullptr;
    v.dtype = ref.dtype;
    v.rank = ref.rank;
    for (int32_t i = 0; i < ref.rank; ++i)
      v.shape[i] = ref.shape[i];
    auto begin = reinterpret_cast<uintptr_t>(data);
    arg_ranges.push_back({begin, begin + (ref.bytes ? ref.bytes : 1)});
    // Also guard the original location (weights mapped from a file).
    auto orig = reinterpret_cast<uintptr_t>(ref.data);
    arg_ranges.push_back({orig, orig + (ref.bytes ? ref.bytes : 1)});
  }

  std::vector<moert_view> &results = cs.results;
  results.resize(static_cast<size_t>(num_results));
  for (moert_view &v : results)
    std::memset(&v, 0, sizeof v);

  CallStats &stats = cs.stats;
  stats.Reset();
  moert_stats_sink sink = {&stats, OnDispatch, OnGateMass, OnImportance};
  moert_model_set_stats_sink_fn set_sink = s->model->set_stats_sink;
  if (set_sink)
    set_sink(s->collect_stats ? &sink : nullptr);
  moert_parallel_hook hook = {s->pool.get(), s->pool->num_threads(),
                              RunParallelFor};
  moert_model_set_parallel_hook_fn set_hook = s->model->set_parallel_hook;
  if (set_hook)
    set_hook(&hook);
  moert_model_set_weight_cache_fn set_cache =
      s->weight_cache ? s->model->set_weight_cache : nullptr;
  if (set_cache)
    set_cache(s->weight_cache->abi());
  if (on_device)
    moert_device_clear_error();
  int rc = entry->invoke(args.data(), results.data());
  if (set_cache)
    set_cache(nullptr);
  if (set_hook)
    set_hook(nullptr);
  if (set_sink)
    set_sink(nullptr);
  // A device error (failed launch, exhausted memory) voids the results.
  moert::StatusPtr device_error(on_device ? moert_device_synchronize()
                                          : nullptr);

  const moert_model_desc *desc = s->model->desc;
  // Which results own their `allocated` buffer (freeable, first of its kind).
  std::vector<char> &owner = cs.owner;
  owner.assign(results.size(), 0);
  for (size_t r = 0; r < results.size(); ++r) {
    const void *a = results[r].allocated;
    if (!a || a == kMlirGlobalMarker || InsideAny(a, arg_ranges) ||
        InsideAny(results[r].data, arg_ranges))
      continue;
    bool first = true;
    for (size_t q = 0; q < r; ++q)
      if (results[q].allocated == a)
        first = false;
    owner[r] = first;
  }
  std::vector<char> &adopted = cs.adopted;
  adopted.assign(results.size(), 0);
  auto free_owned = [&] {
    for (size_t r = 0; r < results.size(); ++r)
      if (owner[r] && !adopted[r])
        desc->free_result(results[r].allocated);
  };

  if (device_error.get()) {
    free_owned();
    return moert::Annotate(device_error.release(),
                           EntryWhat(entry) + " on the GPU");
  }
  if (rc != MOERT_ABI_OK) {
    free_owned();
    return moert::MakeStatus(
        MOERT_STATUS_INTERNAL,
        EntryWhat(entry) +
            StrFormat(" rejected its arguments with %s (%d) although they "
                      "match its description",
                      AbiCodeName(rc), rc));
  }
  for (int32_t r = 0; r < num_results; ++r) {
    moert_status_t st = CheckResult(entry, r, results[static_cast<size_t>(r)],
                                    T.value);
    if (st) {
      free_owned();
      return st;
    }
  }

  moert_status_t st = nullptr;
  for (size_t r = 0; r < results.size() && !st; ++r) {
    const moert_view &v = results[r];
    moert_tensor_t *t = nullptr;
    bool aligned =
        reinterpret_cast<uintptr_t>(v.data) % moert_dtype_size(v.dtype) == 0;
    if (owner[r] && aligned && v.data) {
      moert_model_retain(s->model);
      st = moert::NewTensorOver(v.dtype, v.rank, v.shape, v.data, false,
                                FreeModelResult, s->model, v.allocated, &t);
      if (st)
        moert_model_release(s->model);
      else
        adopted[r] = 1;
    } else {
      size_t bytes = 0;
      st = moert::CheckShape(v.dtype, v.rank, v.shape, nullptr, &bytes);
      if (!st)
        st = moert_tensor_create_copy(v.dtype, v.rank, v.shape, v.data, bytes,
                                      &t);
    }
    out_results[r] = t;
  }
  if (!st)
    st = MergeStats(s, stats);
  free_owned();
  if (st) {
    for (int32_t r = 0; r < num_results; ++r) {
      moert_tensor_release(out_results[r]);
      out_results[r] = nullptr;
    }
    return st;
  }
  s->calls = SatAdd(s->calls, 1);
  return nullptr;
}

// The weight cache of a new CPU session: every bound weight is constant
// memory; the default budget is what the bound weights take in f32 plus an
// eighth for the panels' padding (enough to keep the packed panels of every
// expert once).
void MakeWeightCache(moert_session_t *s) {
  if (s->model->device != MOERT_DEVICE_CPU || !s->model->set_weight_cache)
    return;
  int64_t budget = 0;
  auto cache = std::make_unique<moert::WeightCache>(0);
  for (const BoundWeight &b : s->bound) {
    if (!b.bound || !b.data || b.bytes == 0)
      continue;
    cache->AddConstant(b.data, b.bytes);
    const size_t es = moert_dtype_size(b.dtype);
    const size_t f32 = es ? b.bytes / es * 4 : b.bytes;
    budget = SatAdd(budget, static_cast<int64_t>(
                                std::min<size_t>(f32, INT64_MAX)));
  }
  cache->set_budget(SatAdd(budget, budget / 8));
  s->weight_cache = std::move(cache);
}

moert_status_t Create(moert_model_t *model, int32_t entry_index,
                      const moert_weights_t *weights, bool collect_stats,
                      bool keep_packed, moert_session_t **out) {
  if (!out)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_session is NULL");
  *out = nullptr;
  if (!model)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT, "model is NULL");
  const moert_entry_desc *entry = moert_model_entry(model, entry_index);
  if (!entry)
    return moert_status_make(MOERT_STATUS_OUT_OF_RANGE,
                             "entry index %d is out of range: model '%s' has "
                             "%d entry points",
                             static_cast<int>(entry_index),
                             model->desc->model_name,
                             static_cast<int>(model->desc->num_entries));
  auto *s = new (std::nothrow) moert_session_s();
  if (!s)
    return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  moert_model_retain(model);
  s->model = model;
  // The weights are logically const: the session only reads them.
  s->weights = const_cast<moert_weights_t *>(weights);
  moert_weights_retain(s->weights);
  s->entry_index = entry_index;
  s->entry = entry;
  s->collect_stats = collect_stats;
  moert_status_t st;
  try {
    st = BindWeights(s);
    if (!st && keep_packed)
      MakeWeightCache(s);
  } catch (const std::bad_alloc &) {
    st = moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                           "out of memory binding weights");
  }
  if (st) {
    delete s;
    return st;
  }
  *out = s;
  return nullptr;
}

void AppendLayerJson(std::string *out, size_t k, const LayerAccum &l) {
  *out += StrFormat("    {\"layer\": %zu, \"num_experts\": %lld, "
                    "\"reports\": %lld, \"pairs\": %lld, \"dropped\": %lld, "
                    "\"skipped\": %lld,\n     \"tokens_per_expert\": [",
                    k, static_cast<long long>(l.num_experts),
                    static_cast<long long>(l.reports),
                    static_cast<long long>(l.pairs),
                    static_cast<long long>(l.dropped),
                    static_cast<long long>(l.skipped));
  for (size_t e = 0; e < l.tokens.size(); ++e)
    *out += StrFormat("%s%lld", e ? ", " : "",
                      static_cast<long long>(l.tokens[e]));
  *out += "]";
  if (!l.gate_mass.empty()) {
    *out += ",\n     \"gate_mass\": [";
    for (size_t e = 0; e < l.gate_mass.size(); ++e)
      *out += StrFormat("%s%.9g", e ? ", " : "", l.gate_mass[e]);
    *out += "]";
  }
  if (!l.importance.empty()) {
    *out += ",\n     \"importance\": [";
    for (size_t e = 0; e < l.importance.size(); ++e)
      *out += StrFormat("%s%.9g", e ? ", " : "", l.importance[e]);
    *out += "]";
  }
  *out += "}";
}

} // namespace

extern "C" {

MOERT_API_EXPORT moert_status_t moert_session_create(
    moert_model_t *model, int32_t entry_index, const moert_weights_t *weights,
    moert_session_t **out_session) {
  return Create(model, entry_index, weights, true, true, out_session);
}

MOERT_API_EXPORT void moert_session_set_stats_enabled(moert_session_t *session,
                                                      int enabled) {
  if (session)
    session->collect_stats = enabled != 0;
}

MOERT_API_EXPORT int moert_session_stats_enabled(const moert_session_t *session) {
  return session && session->collect_stats ? 1 : 0;
}

#if defined(__x86_64__)
namespace {
struct FlushJob {
  std::vector<moert::LineRange> ranges;
  int64_t parts = 1;
};

void FlushParts(void *arg, int64_t begin, int64_t end) {
  const FlushJob &job = *static_cast<const FlushJob *>(arg);
  for (int64_t part = begin; part < end; ++part)
    moert::ForEachLineOfPart(job.ranges, part, job.parts, [](uintptr_t line) {
      _mm_clflush(reinterpret_cast<const void *>(line));
    });
  _mm_mfence();
}
} // namespace
#endif

MOERT_API_EXPORT int moert_session_evict_weights(const moert_session_t *session) {
#if defined(__x86_64__)
  if (!session || session->model->device != MOERT_DEVICE_CPU)
    return 0;
  FlushJob job;
  auto add = [&job](const void *data, size_t bytes) {
    job.ranges.push_back(moert::LinesOf(data, bytes));
  };
  for (const BoundWeight &b : session->bound)
    if (b.bound && b.data && b.bytes != 0)
      add(b.data, b.bytes);
  if (session->weight_cache)
    session->weight_cache->ForEachReady(add);
  // On all the session's threads: faster, and it leaves the workers awake
  // (spinning) for the next call, as the previous layer's kernels of a
  // model do, so that a --cold benchmark measures the weights' trip from
  // memory rather than the operating system waking idle threads.
  job.parts = session->pool->num_threads();
  session->pool->ParallelFor(job.parts, FlushParts, &job);
  return 1;
#else
  (void)session;
  return 0;
#endif
}

MOERT_API_EXPORT moert_status_t moert_session_set_packed_weights_limit(
    moert_session_t *session, int64_t max_bytes) {
  if (!session)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT, "session is NULL");
  if (max_bytes < 0)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "packed weights limit %lld is negative",
                             static_cast<long long>(max_bytes));
  if (session->weight_cache)
    session->weight_cache->set_budget(max_bytes);
  return nullptr;
}

MOERT_API_EXPORT int64_t moert_session_packed_weights_limit(
    const moert_session_t *session) {
  return session && session->weight_cache ? session->weight_cache->budget() : 0;
}

MOERT_API_EXPORT int64_t moert_session_packed_weights_bytes(
    const moert_session_t *session) {
  return session && session->weight_cache ? session->weight_cache->bytes() : 0;
}

MOERT_API_EXPORT void moert_session_release(moert_session_t *session) {
  delete session;
}

MOERT_API_EXPORT moert_model_t *moert_session_model(
    const moert_session_t *session) {
  return session->model;
}

MOERT_API_EXPORT int32_t moert_session_entry_index(
    const moert_session_t *session) {
  return session->entry_index;
}

MOERT_API_EXPORT const moert_entry_desc *moert_session_entry(
    const moert_session_t *session) {
  return session->entry;
}

MOERT_API_EXPORT moert_status_t moert_session_call(
    moert_session_t *session, const moert_named_tensor *inputs,
    size_t num_inputs, moert_tensor_t **out_results, int32_t num_results) {
  if (!session)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT, "session is NULL");
  try {
    return Call(session, inputs, num_inputs, out_results, num_results);
  } catch (const std::bad_alloc &) {
    return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                             "out of memory during a call");
  }
}

MOERT_API_EXPORT moert_status_t moert_call(
    moert_model_t *model, int32_t entry_index, const moert_weights_t *weights,
    const moert_named_tensor *inputs, size_t num_inputs,
    moert_tensor_t **out_results, int32_t num_results) {
  if (out_results)
    for (int32_t r = 0; r < num_results; ++r)
      out_results[r] = nullptr;
  moert_session_t *session;
  // One-shot: no statistics, and no packed weights (packing them once costs
  // more than packing per call when there is no second call).
  MOERT_RETURN_IF_ERROR(
      Create(model, entry_index, weights, false, false, &session));
  moert_status_t st =
      moert_session_call(session, inputs, num_inputs, out_results, num_results);
  moert_session_release(session);
  return st;
}

MOERT_API_EXPORT int64_t moert_session_call_count(
    const moert_session_t *session) {
  return session->calls;
}

MOERT_API_EXPORT int64_t moert_session_stats_layer_count(
    const moert_session_t *session) {
  return static_cast<int64_t>(session->layers.size());
}

MOERT_API_EXPORT moert_status_t moert_session_stats(
    const moert_session_t *session, int64_t layer,
    moert_layer_stats *out_stats) {
  if (!session || !out_stats)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "session or out_stats is NULL");
  std::memset(out_stats, 0, sizeof *out_stats);
  if (layer < 0 || layer >= static_cast<int64_t>(session->layers.size()))
    return moert_status_make(MOERT_STATUS_OUT_OF_RANGE,
                             "layer %lld is out of range: %zu layers recorded",
                             static_cast<long long>(layer),
                             session->layers.size());
  const LayerAccum &l = session->layers[static_cast<size_t>(layer)];
  out_stats->num_experts = l.num_experts;
  out_stats->tokens_per_expert = l.tokens.data();
  out_stats->gate_mass = l.gate_mass.empty() ? nullptr : l.gate_mass.data();
  out_stats->importance = l.importance.empty() ? nullptr : l.importance.data();
  out_stats->num_reports = l.reports;
  out_stats->pairs = l.pairs;
  out_stats->dropped = l.dropped;
  out_stats->skipped = l.skipped;
  return nullptr;
}

MOERT_API_EXPORT moert_status_t moert_session_stats_json(
    const moert_session_t *session, char **out_json) {
  if (!session || !out_json)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "session or out_json is NULL");
  *out_json = nullptr;
  std::string json;
  try {
    int64_t tokens = 0, pairs = 0, dropped = 0, skipped = 0;
    for (const LayerAccum &l : session->layers) {
      for (int64_t t : l.tokens)
        tokens = SatAdd(tokens, t);
      pairs = SatAdd(pairs, l.pairs);
      dropped = SatAdd(dropped, l.dropped);
      skipped = SatAdd(skipped, l.skipped);
    }
    json = "{\n";
    json += "  \"model\": " +
            moert::JsonQuote(session->model->desc->model_name) + ",\n";
    json += "  \"entry\": " + moert::JsonQuote(session->entry->name) + ",\n";
    json += StrFormat("  \"stats_supported\": %s,\n",
                      session->model->set_stats_sink ? "true" : "false");
    json += StrFormat("  \"calls\": %lld,\n",
                      static_cast<long long>(session->calls));
    json += StrFormat("  \"num_layers\": %zu,\n", session->layers.size());
    json += "  \"layers\": [";
    for (size_t k = 0; k < session->layers.size(); ++k) {
      json += k ? ",\n" : "\n";
      AppendLayerJson(&json, k, session->layers[k]);
    }
    json += session->layers.empty() ? "],\n" : "\n  ],\n";
    json += StrFormat("  \"totals\": {\"tokens\": %lld, \"pairs\": %lld, "
                      "\"dropped\": %lld, \"skipped\": %lld}\n}\n",
                      static_cast<long long>(tokens),
                      static_cast<long long>(pairs),
                      static_cast<long long>(dropped),
                      static_cast<long long>(skipped));
  } catch (const std::bad_alloc &) {
    return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                             "out of memory formatting statistics");
  }
  char *text = static_cast<char *>(std::malloc(json.size() + 1));
  if (!text)
    return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                             "out of memory formatting statistics");
  std::memcpy(text, json.c_str(), json.size() + 1);
  *out_json = text;
  return nullptr;
}

MOERT_API_EXPORT void moert_session_stats_reset(moert_session_t *session) {
  if (!session)
    return;
  session->layers.clear();
  session->calls = 0;
}

} // extern "C"

moert_status_t moert_session_set_num_threads(moert_session_t *session,
                                             int32_t num_threads) {
  if (!session)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "session must not be NULL");
  if (num_threads < 0)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "num_threads must be >= 0 (0 = all cores), got %d",
                             num_threads);
  int n = num_threads == 0 ? moert::ThreadPool::HardwareThreads() : num_threads;
  if (n != session->pool->num_threads())
    session->pool = std::make_unique<moert::ThreadPool>(n);
  return nullptr;
}

int32_t moert_session_num_threads(const moert_session_t *session) {
  return session ? session->pool->num_threads() : 0;
}
