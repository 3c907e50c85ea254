"""Running `moe-opt` on generated IR.

The frontend only writes text; the C++ tools parse, verify and transform it.
This module finds `moe-opt`, runs it as a subprocess on a named stage of the
pipeline, and turns a failure into a `MoeOptError` that carries moe-opt's own
diagnostics, so a Python caller sees *why* the IR was rejected.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence, Tuple

#: Pipeline stages: the stage name -> moe-opt arguments that produce it from
#: frontend output, so each step of the compiler can be dumped:
#:   "moe"         parses and verifies only (the canonical printed form);
#:   "decomposed"  every moe.layer as route/dispatch/experts/combine;
#:   "fused"       standard expert FFNs fused into moe.expert_ffn;
#:   "loops"       data movement and experts as the parallel loops the GPU
#:                 targets map to kernels;
#:   "llvm"        the CPU model: LLVM dialect calling the runtime kernels;
#:   "nvvm", "rocdl"  host LLVM dialect plus embedded PTX / GCN assembly
#:                 (moe-translate --moe-extract-device-code prints it).
STAGES: Dict[str, Tuple[str, ...]] = {
    "moe": (),
    "decomposed": ("-moe-decompose",),
    "fused": ("-moe-decompose", "-moe-fuse-experts"),
    "loops": ("-moe-decompose", "-moe-fuse-experts", "-canonicalize",
              "-convert-moe-to-linalg", "-convert-moe-to-parallel-loops"),
    "llvm": ("-moe-lower-to-cpu-pipeline",),
    "nvvm": ("-moe-lower-to-nvvm-pipeline",),
    "rocdl": ("-moe-lower-to-rocdl-pipeline=format=isa",),
}

TOOL_NAME = "moe-opt"


class ToolNotFoundError(RuntimeError):
    """moe-opt could not be located."""


class MoeOptError(RuntimeError):
    """moe-opt rejected the input or failed; `stderr` holds its diagnostics."""

    def __init__(self, command: Sequence[str], returncode: int, stderr: str) -> None:
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(
            f"{' '.join(self.command)} failed with exit code {returncode}:\n{stderr.rstrip()}")


def _package_build_dir() -> str:
    """`<repo>/build/bin`, the default CMake build next to python-frontend/."""
    package_dir = os.path.dirname(os.path.abspath(__file__))
    repo_root = os.path.dirname(os.path.dirname(package_dir))
    return os.path.join(repo_root, "build", "bin")


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_moe_opt() -> str:
    """Locates moe-opt: `$MOE_TOOLS_DIR`, then `PATH`, then `../build/bin`.

    The environment variable comes first so that a test harness (lit sets
    it) always uses the tool it just built, never an older one on PATH.
    """
    searched: List[str] = []
    tools_dir = os.environ.get("MOE_TOOLS_DIR")
    if tools_dir:
        candidate = os.path.join(tools_dir, TOOL_NAME)
        if _is_executable(candidate):
            return candidate
        searched.append(candidate + " ($MOE_TOOLS_DIR)")
    on_path = shutil.which(TOOL_NAME)
    if on_path:
        return on_path
    searched.append("PATH")
    candidate = os.path.join(_package_build_dir(), TOOL_NAME)
    if _is_executable(candidate):
        return candidate
    searched.append(candidate)
    raise ToolNotFoundError(f"cannot find {TOOL_NAME}; looked in " + ", ".join(searched)
                            + ". Build the project or set MOE_TOOLS_DIR.")


def run_moe_opt(text: str, args: Sequence[str] = (), *, tool: Optional[str] = None,
                timeout: Optional[float] = 600.0) -> str:
    """Runs `moe-opt <args>` with `text` on stdin and returns its stdout."""
    exe = tool or find_moe_opt()
    command = [exe, *args, "-"]
    try:
        proc = subprocess.run(command, input=text, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise ToolNotFoundError(f"cannot run {exe}: {e.strerror}") from e
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise MoeOptError(command, -1, f"timed out after {timeout} s\n{stderr}") from e
    if proc.returncode != 0:
        raise MoeOptError(command, proc.returncode, proc.stderr)
    return proc.stdout


def stage_args(stage: str) -> Tuple[str, ...]:
    try:
        return STAGES[stage]
    except KeyError:
        raise ValueError(f"unknown stage {stage!r}; stages: " + ", ".join(STAGES)) from None


def compile_ir(text: str, stage: str = "decomposed", *, extra_args: Sequence[str] = (),
               tool: Optional[str] = None, timeout: Optional[float] = 600.0) -> str:
    """Lowers frontend IR to `stage` (see STAGES) and returns the result text."""
    return run_moe_opt(text, [*stage_args(stage), *extra_args], tool=tool, timeout=timeout)


def verify(text: str, *, tool: Optional[str] = None) -> str:
    """Parses and verifies `text`; returns moe-opt's canonical print of it."""
    return compile_ir(text, "moe", tool=tool)
