//===- ModelLibrary.cpp - Model-library glue and C header ------------------===//
//
// Generates, from the tensor-level signatures of a module's public
// functions, the C glue that makes a compiled module a self-describing model
// library (runtime/include/moert/model_abi.h) and the library's C header.
//
//===----------------------------------------------------------------------===//

#include "moe/Target/ModelLibrary.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/Tools/mlir-translate/Translation.h"
#include "mlir/InitAllDialects.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/CommandLine.h"
#include <vector>
#include "llvm/Support/FormatVariadic.h"

using namespace mlir;

namespace {

struct TensorInfo {
  std::string name;
  int dtype;         // moert_dtype
  unsigned elemBytes;
  std::string cType; // element type name for comments
  SmallVector<int64_t> shape;
};

struct EntryInfo {
  std::string symbol;     // MLIR function name
  std::string cName;      // C identifier
  std::vector<TensorInfo> args, results;
};

/// A C identifier from an arbitrary name.
std::string sanitize(StringRef name) {
  std::string out;
  for (char c : name)
    out += llvm::isAlnum(c) ? c : '_';
  if (out.empty() || llvm::isDigit(out[0]))
    out = "_" + out;
  return out;
}

/// A C string literal body (escapes quotes and backslashes).
std::string cString(StringRef s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    if (static_cast<unsigned char>(c) < 0x20)
      continue;
    out += c;
  }
  return out;
}

FailureOr<TensorInfo> describe(Operation *fn, Type type, std::string name,
                               StringRef what) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor)
    return fn->emitError() << what << " " << type
                           << " is not a ranked tensor and cannot be exported";
  if (tensor.getRank() < 1 || tensor.getRank() > 8)
    return fn->emitError() << what << " has rank " << tensor.getRank()
                           << "; model libraries support ranks 1 to 8";
  TensorInfo info;
  info.name = std::move(name);
  Type e = tensor.getElementType();
  if (e.isF32())
    info = {info.name, 0, 4, "f32", {}};
  else if (e.isF16())
    info = {info.name, 1, 2, "f16", {}};
  else if (e.isBF16())
    info = {info.name, 2, 2, "bf16", {}};
  else if (e.isInteger(32))
    info = {info.name, 3, 4, "i32", {}};
  else if (e.isInteger(64))
    info = {info.name, 4, 8, "i64", {}};
  else
    return fn->emitError() << what << " has element type " << e
                           << "; model libraries pass f32, f16, bf16, i32, i64";
  for (int64_t d : tensor.getShape())
    info.shape.push_back(ShapedType::isDynamic(d) ? -1 : d);
  return info;
}

FailureOr<std::vector<EntryInfo>> collectEntries(ModuleOp module) {
  std::vector<EntryInfo> entries;
  llvm::StringSet<> cNames;
  for (auto fn : module.getOps<func::FuncOp>()) {
    if (fn.isExternal() || !fn.isPublic())
      continue;
    EntryInfo entry;
    entry.symbol = fn.getSymName().str();
    entry.cName = sanitize(entry.symbol);
    if (!cNames.insert(entry.cName).second)
      return fn.emitError() << "entry point name clashes with another after "
                               "conversion to a C identifier";
    FunctionType type = fn.getFunctionType();
    llvm::StringSet<> argNames;
    for (auto [i, t] : llvm::enumerate(type.getInputs())) {
      std::string name = "arg" + std::to_string(i);
      if (auto attr = fn.getArgAttrOfType<StringAttr>(i, "moe.name"))
        name = attr.str();
      if (!argNames.insert(name).second)
        return fn.emitError() << "argument name '" << name
                              << "' is used twice";
      auto info = describe(fn, t, name, "argument '" + name + "'");
      if (failed(info))
        return failure();
      entry.args.push_back(*info);
    }
    llvm::StringSet<> resultNames;
    for (auto [i, t] : llvm::enumerate(type.getResults())) {
      std::string name = "result" + std::to_string(i);
      if (auto attr = fn.getResultAttrOfType<StringAttr>(i, "moe.name"))
        name = attr.str();
      if (!resultNames.insert(name).second)
        return fn.emitError() << "result name '" << name << "' is used twice";
      auto info = describe(fn, t, name, "result '" + name + "'");
      if (failed(info))
        return failure();
      entry.results.push_back(*info);
    }
    entries.push_back(std::move(entry));
  }
  if (entries.empty())
    return module.emitError() << "the module has no public function with a "
                                 "body to export as an entry point";
  return entries;
}

std::string modelName(ModuleOp module) {
  if (auto name = module.getSymName())
    return sanitize(*name);
  return "moe_model";
}

std::string shapeText(const TensorInfo &t) {
  std::string s = "[";
  for (auto [i, d] : llvm::enumerate(t.shape)) {
    if (i)
      s += ", ";
    s += d < 0 ? "T" : std::to_string(d);
  }
  return s + "]";
}

} // namespace

LogicalResult mlir::moe::emitModelGlue(ModuleOp module, raw_ostream &os,
                                       StringRef target) {
  if (target != "cpu" && target != "cuda" && target != "rocm")
    return module.emitError("unknown model-library target '")
           << target << "' (cpu, cuda, rocm)";
  bool cpu = target == "cpu";
  auto entries = collectEntries(module);
  if (failed(entries))
    return failure();
  std::string model = modelName(module);
  llvm::SetVector<int64_t> ranks;
  for (const EntryInfo &e : *entries) {
    for (const TensorInfo &t : e.args)
      ranks.insert(t.shape.size());
    for (const TensorInfo &t : e.results)
      ranks.insert(t.shape.size());
  }

  os << "/* Model-library glue for '" << model
     << "'. Generated by moe-translate --moe-to-model-glue; do not edit. */\n"
     << "#include <stddef.h>\n#include <stdint.h>\n#include <stdlib.h>\n"
     << "#include \"moert/model_abi.h\"\n\n";
  for (int64_t r : ranks)
    os << llvm::formatv("typedef struct {{ void *allocated; void *aligned; "
                        "int64_t offset; int64_t sizes[{0}]; int64_t "
                        "strides[{0}]; } moe_memref_{0};\n",
                        r);
  os << R"C(
/* Checks one argument against its description; `dyn` carries the value of
   the dynamic dimension (T) across arguments. */
static int moe_check(const moert_view *v, int32_t dtype, int32_t rank,
                     const int64_t *shape, int64_t *dyn) {
  if (!v->data) return MOERT_ABI_NULL_DATA;
  if (v->rank != rank) return MOERT_ABI_BAD_RANK;
  if (v->dtype != dtype) return MOERT_ABI_BAD_DTYPE;
  for (int32_t i = 0; i < rank; ++i) {
    if (shape[i] >= 0) {
      if (v->shape[i] != shape[i]) return MOERT_ABI_BAD_SHAPE;
    } else {
      if (v->shape[i] < 1 || (*dyn >= 0 && v->shape[i] != *dyn))
        return MOERT_ABI_BAD_SHAPE;
      *dyn = v->shape[i];
    }
  }
  return MOERT_ABI_OK;
}

/* Row-major descriptor over a dense view. */
static void moe_fill(void *allocated_aligned_offset, int64_t *sizes,
                     int64_t *strides, const moert_view *v) {
  void **ptrs = (void **)allocated_aligned_offset;
  ptrs[0] = v->data;
  ptrs[1] = v->data;
  ((int64_t *)allocated_aligned_offset)[2] = 0;
  int64_t stride = 1;
  for (int32_t i = v->rank - 1; i >= 0; --i) {
    sizes[i] = v->shape[i];
    strides[i] = stride;
    stride *= v->shape[i];
  }
}

/* A result view over a returned descriptor. */
static void moe_result(moert_view *out, void *allocated, void *aligned,
                       int64_t offset, const int64_t *sizes, int32_t rank,
                       int32_t dtype, size_t elem_bytes) {
  out->allocated = allocated;
  out->data = (char *)aligned + offset * (int64_t)elem_bytes;
  out->dtype = dtype;
  out->rank = rank;
  for (int32_t i = 0; i < rank; ++i) out->shape[i] = sizes[i];
}

)C";

  for (const EntryInfo &e : *entries) {
    const std::string &c = e.cName;
    // Shapes and descriptions.
    auto emitTable = [&](const std::vector<TensorInfo> &list, StringRef kind) {
      for (auto [i, t] : llvm::enumerate(list)) {
        os << "static const int64_t moe_shape_" << c << "_" << kind << i
           << "[] = {";
        llvm::interleaveComma(t.shape, os);
        os << "};\n";
      }
      if (list.empty())
        return;
      os << "static const moert_tensor_desc moe_" << kind << "_" << c
         << "[] = {\n";
      for (auto [i, t] : llvm::enumerate(list))
        os << "  {\"" << cString(t.name) << "\", " << t.dtype << ", "
           << t.shape.size() << ", moe_shape_" << c << "_" << kind << i
           << "},\n";
      os << "};\n";
    };
    emitTable(e.args, "arg");
    emitTable(e.results, "res");

    // The C interface of the compiled function.
    std::string resultStruct;
    if (e.results.size() > 1) {
      resultStruct = "moe_results_" + c;
      os << "typedef struct {";
      for (auto [i, t] : llvm::enumerate(e.results))
        os << " moe_memref_" << t.shape.size() << " r" << i << ";";
      os << " } " << resultStruct << ";\n";
    } else if (e.results.size() == 1) {
      resultStruct = "moe_memref_" + std::to_string(e.results[0].shape.size());
    }
    os << "extern void _mlir_ciface_" << e.symbol << "(";
    SmallVector<std::string> params;
    if (!resultStruct.empty())
      params.push_back(resultStruct + " *");
    for (const TensorInfo &t : e.args)
      params.push_back("moe_memref_" + std::to_string(t.shape.size()) + " *");
    if (params.empty())
      os << "void";
    llvm::interleaveComma(params, os);
    os << ");\n";

    // The invoke function.
    os << "static int moe_invoke_" << c
       << "(const moert_view *args, moert_view *results) {\n"
       << "  int64_t dyn = -1;\n  int rc;\n";
    for (auto [i, t] : llvm::enumerate(e.args))
      os << "  if ((rc = moe_check(&args[" << i << "], " << t.dtype << ", "
         << t.shape.size() << ", moe_shape_" << c << "_arg" << i
         << ", &dyn))) return rc;\n";
    for (auto [i, t] : llvm::enumerate(e.args))
      os << "  moe_memref_" << t.shape.size() << " a" << i << ";\n"
         << "  moe_fill(&a" << i << ", a" << i << ".sizes, a" << i
         << ".strides, &args[" << i << "]);\n";
    if (!resultStruct.empty())
      os << "  " << resultStruct << " res;\n";
    os << "  _mlir_ciface_" << e.symbol << "(";
    SmallVector<std::string> callArgs;
    if (!resultStruct.empty())
      callArgs.push_back("&res");
    for (size_t i = 0; i < e.args.size(); ++i)
      callArgs.push_back("&a" + std::to_string(i));
    llvm::interleaveComma(callArgs, os);
    os << ");\n";
    for (auto [i, t] : llvm::enumerate(e.results)) {
      std::string r = e.results.size() > 1 ? "res.r" + std::to_string(i) : "res";
      os << "  moe_result(&results[" << i << "], " << r << ".allocated, " << r
         << ".aligned, " << r << ".offset, " << r << ".sizes, "
         << t.shape.size() << ", " << t.dtype << ", " << t.elemBytes << ");\n";
    }
    os << "  return MOERT_ABI_OK;\n}\n\n";
    // The exported, typed-by-name wrapper declared in the header.
    os << "int " << model << "_" << c
       << "(const moert_view *args, moert_view *results) {\n  return moe_invoke_"
       << c << "(args, results);\n}\n\n";
  }

  if (cpu) {
    // Routing statistics: forward the runtime's sink to the kernels.
    os << "extern void moert_cpu_set_stats_sink(const moert_stats_sink *);\n"
       << "__attribute__((visibility(\"default\")))\n"
       << "void moert_model_set_stats_sink(const moert_stats_sink *sink) {\n"
       << "  moert_cpu_set_stats_sink(sink);\n}\n\n";
    // Parallelism: forward the runtime's thread pool to the kernels.
    os << "extern void moert_cpu_set_parallel_hook(const moert_parallel_hook "
          "*);\n"
       << "__attribute__((visibility(\"default\")))\n"
       << "void moert_model_set_parallel_hook(const moert_parallel_hook *hook) "
          "{\n"
       << "  moert_cpu_set_parallel_hook(hook);\n}\n\n";
    // Packed weights: forward the runtime's weight cache to the kernels.
    os << "extern void moert_cpu_set_weight_cache(const moert_weight_cache "
          "*);\n"
       << "__attribute__((visibility(\"default\")))\n"
       << "void moert_model_set_weight_cache(const moert_weight_cache *cache) "
          "{\n"
       << "  moert_cpu_set_weight_cache(cache);\n}\n\n";
    os << "static void moe_free_result(void *allocated) { free(allocated); "
          "}\n\n";
  } else {
    // GPU models allocate every buffer (results included) through the
    // runtime's device allocator (libmoert, moert/device.h).
    os << "extern void _mlir_memref_to_llvm_free(void *);\n"
       << "static void moe_free_result(void *allocated) { "
          "_mlir_memref_to_llvm_free(allocated); }\n\n";
  }
  os << "static const moert_entry_desc moe_entries[] = {\n";
  for (const EntryInfo &e : *entries) {
    os << "  {\"" << cString(e.symbol) << "\", " << e.args.size() << ", "
       << (e.args.empty() ? "NULL" : "moe_arg_" + e.cName) << ", "
       << e.results.size() << ", "
       << (e.results.empty() ? "NULL" : "moe_res_" + e.cName)
       << ", moe_invoke_" << e.cName << "},\n";
  }
  os << "};\n\nstatic const moert_model_desc moe_model = {\n"
     << "  MOERT_MODEL_ABI_VERSION, \"" << cString(model) << "\", \"" << target
     << "\", "
     << entries->size() << ", moe_entries, moe_free_result};\n\n"
     << "__attribute__((visibility(\"default\")))\n"
     << "const moert_model_desc *moert_model_describe(void) { return "
        "&moe_model; }\n";
  return success();
}

LogicalResult mlir::moe::emitModelHeader(ModuleOp module, raw_ostream &os) {
  auto entries = collectEntries(module);
  if (failed(entries))
    return failure();
  std::string model = modelName(module);
  std::string guard = "MOE_MODEL_" + StringRef(model).upper() + "_H";
  os << "/* C interface of the model library '" << model
     << "'. Generated by moe-translate --moe-to-c-header; do not edit.\n"
     << " *\n"
     << " * Load the library with libmoert (moert_model_load), or link it and\n"
     << " * call the entry points below directly: args/results follow the\n"
     << " * argument tables, T is the token count (any T >= 1), results are\n"
     << " * malloc'd by the model and released with free_result of\n"
     << " * moert_model_describe(). */\n"
     << "#ifndef " << guard << "\n#define " << guard << "\n\n"
     << "#include \"moert/model_abi.h\"\n\n"
     << "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n";
  for (auto [index, e] : llvm::enumerate(*entries)) {
    std::string prefix = StringRef(model + "_" + e.cName).upper();
    os << "/* Entry point '" << e.symbol << "' (index " << index << ").\n";
    for (auto [i, t] : llvm::enumerate(e.args))
      os << " *   arg " << i << " \"" << cString(t.name) << "\": " << t.cType
         << " " << shapeText(t) << "\n";
    for (auto [i, t] : llvm::enumerate(e.results))
      os << " *   result " << i << " \"" << cString(t.name) << "\": "
         << t.cType << " " << shapeText(t) << "\n";
    os << " */\n"
       << "#define " << prefix << "_ENTRY_INDEX " << index << "\n"
       << "#define " << prefix << "_NUM_ARGS " << e.args.size() << "\n"
       << "#define " << prefix << "_NUM_RESULTS " << e.results.size() << "\n"
       << "int " << model << "_" << e.cName
       << "(const moert_view *args, moert_view *results);\n\n";
  }
  os << "const moert_model_desc *moert_model_describe(void);\n\n"
     << "#ifdef __cplusplus\n}\n#endif\n\n#endif /* " << guard << " */\n";
  return success();
}

static llvm::cl::opt<std::string> modelTarget(
    "moe-model-target",
    llvm::cl::desc("Target of the model library whose glue "
                   "--moe-to-model-glue emits: cpu, cuda or rocm"),
    llvm::cl::init("cpu"));

void mlir::moe::registerModelLibraryTranslations() {
  auto registerDialects = [](DialectRegistry &registry) {
    registerAllDialects(registry);
    registry.insert<MoeDialect>();
  };
  TranslateFromMLIRRegistration glue(
      "moe-to-model-glue",
      "Emit the C glue (self-description and entry adapters) of a model "
      "library",
      [](Operation *op, raw_ostream &os) -> LogicalResult {
        auto module = dyn_cast<ModuleOp>(op);
        if (!module)
          return op->emitError("expected a builtin.module");
        return emitModelGlue(module, os, modelTarget);
      },
      registerDialects);
  TranslateFromMLIRRegistration header(
      "moe-to-c-header", "Emit the public C header of a model library",
      [](Operation *op, raw_ostream &os) -> LogicalResult {
        auto module = dyn_cast<ModuleOp>(op);
        if (!module)
          return op->emitError("expected a builtin.module");
        return emitModelHeader(module, os);
      },
      registerDialects);
}
