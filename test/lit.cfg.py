# -*- Python -*-
# lit configuration of the moe regression suite.

import os
import shutil
import subprocess

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "MOE"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".py", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "Inputs",
                   "unittests"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moe_obj_root, "test")

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%moe_src_root", config.moe_src_root))
config.substitutions.append(("%moe_examples", os.path.join(config.moe_src_root, "examples")))

llvm_config.use_default_substitutions()
# Keep FileCheck strict, as upstream MLIR does.
config.environment["FILECHECK_OPTS"] = "-enable-var-scope --allow-unused-prefixes=false"

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
# `not`, `count` and `split-file` live next to FileCheck.
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.moe_tools_dir, append_path=True)
tool_dirs = [config.moe_tools_dir, config.llvm_tools_dir]
tools = ["moe-opt", "moe-translate", "moe-compile", "moe-run"]
llvm_config.add_tool_substitutions(tools, tool_dirs)

clang = shutil.which("clang-22", path=config.llvm_tools_dir) or shutil.which("clang-22") or "clang"
config.substitutions.append(("%clang", clang))
llvm_config.add_tool_substitutions(["llvm-nm", "llvm-readelf", "llvm-objdump"], [config.llvm_tools_dir])

# A Python interpreter for the frontend tests: the frontend needs only the
# standard library.
python = shutil.which("python3") or "/usr/bin/python3"
config.substitutions.append(("%PYTHON", python))
config.environment["PYTHONPATH"] = os.path.join(config.moe_src_root, "python-frontend")
config.environment["MOE_TOOLS_DIR"] = config.moe_tools_dir

# Integration tests compare compiled models with a numpy reference; they
# need an interpreter with numpy (Debian: python3-numpy for /usr/bin/python3).
def _python_with_numpy():
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and subprocess.call([candidate, "-c", "import numpy"],
                                         stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL) == 0:
            return candidate
    return None

numpy_python = _python_with_numpy()
if numpy_python:
    config.available_features.add("numpy")
    config.substitutions.append(("%NUMPY_PYTHON", numpy_python))
config.substitutions.append(("%moe_build", config.moe_obj_root))

# Optional features: CUDA's ptxas for assembling PTX in GPU lowering tests.
ptxas = shutil.which("ptxas") or ("/usr/local/cuda/bin/ptxas"
                                  if os.path.exists("/usr/local/cuda/bin/ptxas") else None)
if ptxas:
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", ptxas))
# ld.lld links HSACO for the ROCm target.
if shutil.which("ld.lld-22") or shutil.which("ld.lld") or os.path.exists(
        os.path.join(config.llvm_tools_dir, "ld.lld")):
    config.available_features.add("lld")

# GPU execution tests run only where a device is present: `cuda` / `rocm`
# when the driver loads and reports at least one device.
def _has_gpu(lib, init, count):
    import ctypes
    try:
        api = ctypes.CDLL(lib)
        n = ctypes.c_int(0)
        return getattr(api, init)(0) == 0 and getattr(api, count)(ctypes.byref(n)) == 0 and n.value > 0
    except (OSError, AttributeError):
        return False

if _has_gpu("libcuda.so.1", "cuInit", "cuDeviceGetCount"):
    config.available_features.add("cuda")
if _has_gpu("libamdhip64.so", "hipInit", "hipGetDeviceCount"):
    config.available_features.add("rocm")
