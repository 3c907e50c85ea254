//===- model_internal.h - moert_model_s, shared by model.cc/session.cc -*- C++ -*-===//

#ifndef MOERT_SRC_MODEL_INTERNAL_H
#define MOERT_SRC_MODEL_INTERNAL_H

#include <atomic>
#include <string>

#include "base/internal.h"

struct moert_model_s {
  std::atomic<int64_t> refs{1};
  void *handle = nullptr;                 // dlopen handle
  std::string path;                       // as given to moert_model_load
  const moert_model_desc *desc = nullptr; // validated
  moert_model_set_stats_sink_fn set_stats_sink = nullptr; // optional
  moert_model_set_parallel_hook_fn set_parallel_hook = nullptr; // optional
  moert_model_set_weight_cache_fn set_weight_cache = nullptr;   // optional
  int device = 0; // moert_device_kind_t of desc->target
};

#endif // MOERT_SRC_MODEL_INTERNAL_H
