//===- model.cc - loading and validating model libraries ------------------===//

#include <cerrno>
#include <cstring>
#include <new>
#include <set>
#include <string>

#include <dlfcn.h>
#include <sys/stat.h>

#include "model_internal.h"

namespace {

using moert::StrFormat;

// Validates one tensor description. `what` is e.g. "entry 'add': argument 1".
moert_status_t CheckTensorDesc(const moert_tensor_desc &t,
                               const std::string &what) {
  if (!t.name)
    return moert::MakeStatus(MOERT_STATUS_FAILED_PRECONDITION,
                             what + " has a NULL name");
  std::string where = what + " ('" + t.name + "')";
  if (moert_dtype_size(t.dtype) == 0)
    return moert::MakeStatus(
        MOERT_STATUS_FAILED_PRECONDITION,
        where + StrFormat(" has unknown dtype %d", static_cast<int>(t.dtype)));
  if (t.rank <= 0 || t.rank > MOERT_MAX_RANK)
    return moert::MakeStatus(
        MOERT_STATUS_FAILED_PRECONDITION,
        where + StrFormat(" has rank %d; ranks must be in [1, %d]",
                          static_cast<int>(t.rank), MOERT_MAX_RANK));
  if (!t.shape)
    return moert::MakeStatus(MOERT_STATUS_FAILED_PRECONDITION,
                             where + " has a NULL shape");
  return nullptr;
}

bool HasDynamicDim(const moert_tensor_desc &t) {
  for (int32_t i = 0; i < t.rank; ++i)
    if (t.shape[i] < 0)
      return true;
  return false;
}

moert_status_t CheckTensorList(const moert_tensor_desc *list, int32_t count,
                               const std::string &entry, const char *kind,
                               bool *any_dynamic) {
  if (count < 0)
    return moert::MakeStatus(
        MOERT_STATUS_FAILED_PRECONDITION,
        entry + StrFormat(" has a negative number of %ss (%d)", kind,
                          static_cast<int>(count)));
  if (count > 0 && !list)
    return moert::MakeStatus(
        MOERT_STATUS_FAILED_PRECONDITION,
        entry + StrFormat(" has %d %ss but a NULL %s list",
                          static_cast<int>(count), kind, kind));
  std::set<std::string> names;
  *any_dynamic = false;
  for (int32_t i = 0; i < count; ++i) {
    MOERT_RETURN_IF_ERROR(CheckTensorDesc(
        list[i], entry + StrFormat(": %s %d", kind, static_cast<int>(i))));
    if (!names.insert(list[i].name).second)
      return moert::MakeStatus(MOERT_STATUS_FAILED_PRECONDITION,
                               entry + StrFormat(": duplicate %s name '%s'",
                                                 kind, list[i].name));
    *any_dynamic |= HasDynamicDim(list[i]);
  }
  return nullptr;
}

moert_status_t ValidateDescription(const moert_model_desc *d) {
  if (d->abi_version != MOERT_MODEL_ABI_VERSION)
    return moert_status_make(MOERT_STATUS_FAILED_PRECONDITION,
                             "built for model ABI version %u, but this runtime "
                             "supports version %d",
                             d->abi_version, MOERT_MODEL_ABI_VERSION);
  if (!d->model_name)
    return moert_status_make(MOERT_STATUS_FAILED_PRECONDITION,
                             "the model name is NULL");
  if (!d->target)
    return moert_status_make(MOERT_STATUS_FAILED_PRECONDITION,
                             "the target is NULL");
  if (!d->free_result)
    return moert_status_make(MOERT_STATUS_FAILED_PRECONDITION,
                             "free_result is NULL");
  if (d->num_entries <= 0)
    return moert_status_make(MOERT_STATUS_FAILED_PRECONDITION,
                             "the model has no entry points (num_entries = %d)",
                             static_cast<int>(d->num_entries));
  if (!d->entries)
    return moert_status_make(MOERT_STATUS_FAILED_PRECONDITION,
                             "the entry list is NULL");
  std::set<std::string> names;
  for (int32_t e = 0; e < d->num_entries; ++e) {
    const moert_entry_desc &entry = d->entries[e];
    if (!entry.name)
      return moert_status_make(MOERT_STATUS_FAILED_PRECONDITION,
                               "entry %d has a NULL name", static_cast<int>(e));
    if (!names.insert(entry.name).second)
      return moert_status_make(MOERT_STATUS_FAILED_PRECONDITION,
                               "duplicate entry name '%s'", entry.name);
    std::string what = StrFormat("entry '%s'", entry.name);
    if (!entry.invoke)
      return moert::MakeStatus(MOERT_STATUS_FAILED_PRECONDITION,
                               what + " has a NULL invoke function");
    bool args_dynamic, results_dynamic;
    MOERT_RETURN_IF_ERROR(CheckTensorList(entry.args, entry.num_args, what,
                                          "argument", &args_dynamic));
    MOERT_RETURN_IF_ERROR(CheckTensorList(entry.results, entry.num_results,
                                          what, "result", &results_dynamic));
    if (results_dynamic && !args_dynamic)
      return moert::MakeStatus(MOERT_STATUS_FAILED_PRECONDITION,
                               what + " has a result with a dynamic dimension "
                                      "but no argument with one");
  }
  return nullptr;
}

moert_status_t Load(const char *path, moert_model_s *model) {
  struct stat st;
  if (::stat(path, &st) != 0) {
    int err = errno;
    return moert_status_make(err == ENOENT ? MOERT_STATUS_NOT_FOUND
                                           : MOERT_STATUS_UNAVAILABLE,
                             "cannot open: %s", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode))
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "not a regular file");
  // dlopen searches the library path for names without '/': never do that.
  std::string open_path = path;
  if (open_path.find('/') == std::string::npos)
    open_path = "./" + open_path;
  dlerror();
  // A GPU model library loads its device code in constructors run by
  // dlopen; errors they record are this library's.
  moert_device_clear_error();
  model->handle = dlopen(open_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!model->handle) {
    const char *err = dlerror();
    return moert_status_make(MOERT_STATUS_UNAVAILABLE,
                             "cannot load the shared library: %s",
                             err ? err : "unknown dlopen error");
  }
  dlerror();
  void *sym = dlsym(model->handle, MOERT_MODEL_DESCRIBE_SYMBOL);
  if (!sym)
    return moert_status_make(MOERT_STATUS_NOT_FOUND,
                             "does not export '%s' (not a model library built "
                             "by moe-compile?)",
                             MOERT_MODEL_DESCRIBE_SYMBOL);
  auto describe = reinterpret_cast<moert_model_describe_fn>(sym);
  const moert_model_desc *desc = describe();
  if (!desc)
    return moert_status_make(MOERT_STATUS_FAILED_PRECONDITION,
                             "%s() returned NULL", MOERT_MODEL_DESCRIBE_SYMBOL);
  MOERT_RETURN_IF_ERROR(ValidateDescription(desc));
  int device = moert_device_kind_from_name(desc->target);
  if (device < 0)
    return moert_status_make(MOERT_STATUS_UNIMPLEMENTED,
                             "targets '%s', which this runtime does not run "
                             "(cpu, cuda, rocm)",
                             desc->target);
  if (device != MOERT_DEVICE_CPU) {
    // The device code was loaded (or not) by the library's constructors.
    MOERT_RETURN_IF_ERROR(
        moert_device_init(static_cast<moert_device_kind_t>(device)));
    if (moert_status_t st = moert_device_status())
      return moert::Annotate(st, StrFormat("targets %s", desc->target));
  }
  model->device = device;
  model->desc = desc;
  model->set_stats_sink = reinterpret_cast<moert_model_set_stats_sink_fn>(
      dlsym(model->handle, MOERT_MODEL_SET_STATS_SINK_SYMBOL));
  model->set_parallel_hook = reinterpret_cast<moert_model_set_parallel_hook_fn>(
      dlsym(model->handle, MOERT_MODEL_SET_PARALLEL_HOOK_SYMBOL));
  model->set_weight_cache = reinterpret_cast<moert_model_set_weight_cache_fn>(
      dlsym(model->handle, MOERT_MODEL_SET_WEIGHT_CACHE_SYMBOL));
  dlerror();
  return nullptr;
}

void Destroy(moert_model_s *model) {
  if (model->handle)
    dlclose(model->handle);
  delete model;
}

} // namespace

extern "C" {

MOERT_API_EXPORT moert_status_t moert_model_load(const char *path,
                                                 moert_model_t **out_model) {
  if (!out_model)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_model is NULL");
  *out_model = nullptr;
  if (!path || !*path)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "the model path is empty");
  auto *model = new (std::nothrow) moert_model_s();
  if (!model)
    return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  moert_status_t s;
  try {
    model->path = path;
    s = Load(path, model);
  } catch (const std::bad_alloc &) {
    s = moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  }
  if (s) {
    Destroy(model);
    return moert::Annotate(s, StrFormat("model library '%s'", path));
  }
  *out_model = model;
  return nullptr;
}

MOERT_API_EXPORT void moert_model_retain(moert_model_t *model) {
  if (model)
    model->refs.fetch_add(1, std::memory_order_relaxed);
}

MOERT_API_EXPORT void moert_model_release(moert_model_t *model) {
  if (model && model->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
    Destroy(model);
}

MOERT_API_EXPORT const moert_model_desc *moert_model_description(
    const moert_model_t *model) {
  return model->desc;
}

MOERT_API_EXPORT const char *moert_model_name(const moert_model_t *model) {
  return model->desc->model_name;
}

MOERT_API_EXPORT const char *moert_model_target(const moert_model_t *model) {
  return model->desc->target;
}

MOERT_API_EXPORT const char *moert_model_path(const moert_model_t *model) {
  return model->path.c_str();
}

MOERT_API_EXPORT int moert_model_has_stats(const moert_model_t *model) {
  return model->set_stats_sink != nullptr;
}

MOERT_API_EXPORT int32_t moert_model_entry_count(const moert_model_t *model) {
  return model->desc->num_entries;
}

MOERT_API_EXPORT const moert_entry_desc *moert_model_entry(
    const moert_model_t *model, int32_t index) {
  if (!model || index < 0 || index >= model->desc->num_entries)
    return nullptr;
  return &model->desc->entries[index];
}

MOERT_API_EXPORT moert_status_t moert_model_find_entry(
    const moert_model_t *model, const char *name, int32_t *out_index) {
  if (!model || !name || !out_index)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "model, name or out_index is NULL");
  *out_index = -1;
  std::string list;
  for (int32_t i = 0; i < model->desc->num_entries; ++i) {
    if (std::strcmp(model->desc->entries[i].name, name) == 0) {
      *out_index = i;
      return nullptr;
    }
    list += (i ? ", " : "") + std::string(model->desc->entries[i].name);
  }
  return moert_status_make(MOERT_STATUS_NOT_FOUND,
                           "model '%s' has no entry point '%s' (entry points: "
                           "%s)",
                           model->desc->model_name, name, list.c_str());
}

MOERT_API_EXPORT int32_t moert_entry_find_arg(const moert_entry_desc *entry,
                                              const char *name) {
  if (!entry || !name)
    return -1;
  for (int32_t i = 0; i < entry->num_args; ++i)
    if (std::strcmp(entry->args[i].name, name) == 0)
      return i;
  return -1;
}

MOERT_API_EXPORT int32_t moert_entry_find_result(const moert_entry_desc *entry,
                                                 const char *name) {
  if (!entry || !name)
    return -1;
  for (int32_t i = 0; i < entry->num_results; ++i)
    if (std::strcmp(entry->results[i].name, name) == 0)
      return i;
  return -1;
}

} // extern "C"
