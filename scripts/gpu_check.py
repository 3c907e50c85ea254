#!/usr/bin/env python3
"""Runs the GPU execution tests and the GPU benchmark on a machine that has
the GPU, its driver and python3 with numpy, but no LLVM/MLIR (no moe-compile,
lit or FileCheck): everything that needs the compiler is prepared beforehand
on a build machine, into a bundle.

  # on the build machine (no GPU needed), after scripts/build.sh:
  python3 scripts/gpu_check.py bundle [--build build] [--out build/gpu-bundle]
                                      [--target cuda|rocm] [--compile-arg=ARG ...]
  # copy the checkout (same commit) and the bundle to the GPU machine, then:
  python3 scripts/gpu_check.py run [--bundle build/gpu-bundle] [--only PREFIX,...]
  python3 bench/gpu_bench.py --build build/gpu-bundle --libs build/gpu-bundle/bench

The cases are the RUN lines of test/Integration/CUDA/examples.test (ROCm:
test/Integration/ROCm/examples.test), so lit and this script run the same
checks: each RUN line's run_model.py command is run with the bundle's
prebuilt model library (--model-lib), and its `PREFIX-COUNT-n: text` lines are
checked by counting output lines that contain the text. The bundle holds
bin/moe-run, lib/libmoert*.so (moe-run finds them through its RUNPATH
$ORIGIN/../lib), models/PREFIX.so per RUN line, and bench/ for
bench/gpu_bench.py --libs. Prints a summary line "gpu tests: N passed,
M failed" and exits non-zero when a case fails.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITES = {"cuda": "test/Integration/CUDA/examples.test",
          "rocm": "test/Integration/ROCm/examples.test"}
RUN_RE = re.compile(r"^// RUN: %NUMPY_PYTHON (\S+) (\S+) (.*?) --build %moe_build "
                    r"--work %t\.(\S+) \| FileCheck %s --check-prefix=(\w+)$")


def read_cases(target):
    """[(prefix, model path, run_model.py arguments, [(count, text)])]."""
    path = os.path.join(ROOT, SUITES[target])
    lines = open(path).read().splitlines()
    cases = []
    for line in lines:
        if line.startswith("// RUN:"):
            m = RUN_RE.match(line)
            if not m:
                sys.exit("gpu_check: %s: RUN line not in the expected form:\n  %s" % (path, line))
            script, model, args, _, prefix = m.groups()
            if not script.endswith("test/Integration/run_model.py"):
                sys.exit("gpu_check: %s: RUN line does not call run_model.py:\n  %s" % (path, line))
            checks = []
            for c in lines:
                cm = re.match(r"^// %s-COUNT-(\d+): (.*)$" % prefix, c)
                if cm:
                    checks.append((int(cm.group(1)), cm.group(2)))
                elif c.startswith("// %s:" % prefix) or c.startswith("// %s-" % prefix):
                    sys.exit("gpu_check: %s: only PREFIX-COUNT-n checks are supported:\n  %s"
                             % (path, c))
            if not checks:
                sys.exit("gpu_check: %s: no %s-COUNT-n lines" % (path, prefix))
            cases.append((prefix, model.replace("%moe_src_root", ROOT), args.split(), checks))
    if not cases:
        sys.exit("gpu_check: %s has no RUN lines" % path)
    return cases


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit("gpu_check: %s failed:\n%s%s" % (" ".join(cmd), proc.stdout, proc.stderr))
    return proc.stdout


def bundle(a):
    bindir = os.path.join(a.build, "bin")
    libdir = os.path.join(a.build, "lib")
    for sub in ("bin", "lib", "models"):
        os.makedirs(os.path.join(a.out, sub), exist_ok=True)
    shutil.copy2(os.path.join(bindir, "moe-run"), os.path.join(a.out, "bin"))
    for name in sorted(os.listdir(libdir)):
        if name.startswith("libmoert") and ".so" in name:
            shutil.copy2(os.path.join(libdir, name), os.path.join(a.out, "lib"), follow_symlinks=False)
    for prefix, model, args, _ in read_cases(a.target):
        lib = os.path.join(a.out, "models", prefix + ".so")
        run([os.path.join(bindir, "moe-compile"), model, "--target=" + a.target, "-o", lib]
            + a.compile_arg)
        print("compiled %s -> %s" % (os.path.relpath(model, ROOT), lib))
    if a.target == "cuda":
        out = run([sys.executable, os.path.join(ROOT, "bench", "gpu_bench.py"), "--build", a.build,
                   "--compile-to", os.path.join(a.out, "bench")]
                  + ["--compile-arg=" + c for c in a.compile_arg])
        print(out, end="")
    print("bundle: %s" % a.out)


def run_cases(a):
    cases = read_cases(a.target)
    only = set(a.only.split(",")) if a.only else None
    if only:
        unknown = only - {c[0] for c in cases}
        if unknown:
            sys.exit("gpu_check: --only: no case %s" % ", ".join(sorted(unknown)))
    passed, failed = 0, []
    work = a.work or tempfile.mkdtemp(prefix="moe-gpu-check-")
    for prefix, model, args, checks in cases:
        if only and prefix not in only:
            continue
        lib = os.path.join(a.bundle, "models", prefix + ".so")
        cmd = [sys.executable, os.path.join(ROOT, "test", "Integration", "run_model.py"), model]
        cmd += args + ["--build", a.bundle, "--work", os.path.join(work, prefix),
                       "--model-lib", lib]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
            out, code = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            out = "".join(x.decode() if isinstance(x, bytes) else x
                          for x in (e.stdout, e.stderr) if x)
            out, code = out + "\n(timed out after %d s)\n" % a.timeout, "timeout"

        bad = ["%s: expected %d lines with '%s', got %d" % (prefix, n, text, out.count(text))
               for n, text in checks if out.count(text) != n]
        if code != 0:
            bad.insert(0, "%s: run_model.py exited with %s" % (prefix, code))
        if bad:
            failed.append(prefix)
            print("FAIL %s\n  %s\n%s" % (prefix, "\n  ".join(bad), out), flush=True)
        else:
            passed += 1
            print("PASS %s\n%s" % (prefix, out), end="", flush=True)
    print("gpu tests: %d passed, %d failed%s"
          % (passed, len(failed), (" (" + ", ".join(failed) + ")") if failed else ""))
    return 1 if failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bundle", help="compile everything the GPU checks need (no GPU needed)")
    b.add_argument("--build", default=os.path.join(ROOT, "build"))
    b.add_argument("--out", default=os.path.join(ROOT, "build", "gpu-bundle"))
    b.add_argument("--target", default="cuda", choices=sorted(SUITES))
    b.add_argument("--compile-arg", action="append", default=[], metavar="ARG",
                   help="extra moe-compile argument (repeatable), e.g. --compile-arg=--gpu-ffn=columns")
    r = sub.add_parser("run", help="run the GPU execution tests from a bundle")
    r.add_argument("--bundle", default=os.path.join(ROOT, "build", "gpu-bundle"))
    r.add_argument("--target", default="cuda", choices=sorted(SUITES))
    r.add_argument("--only", help="comma-separated check prefixes (e.g. MIXTRAL,ROUTING)")
    r.add_argument("--timeout", type=int, default=300, help="seconds per case (default 300)")
    r.add_argument("--work", help="folder for inputs and outputs (default: a new temporary one)")
    a = p.parse_args()
    if a.command == "bundle":
        bundle(a)
        return 0
    if not os.path.isfile(os.path.join(a.bundle, "bin", "moe-run")):
        sys.exit("gpu_check: %s has no bin/moe-run (make it with 'gpu_check.py bundle')" % a.bundle)
    return run_cases(a)


if __name__ == "__main__":
    sys.exit(main())
