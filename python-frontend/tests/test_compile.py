"""moe-opt discovery, the stage table and error reporting.

Most tests use a fake moe-opt (a small shell script) so they run without a
build; the last class uses the real tool when it exists.
"""

import os
import stat
import tempfile
import unittest
from unittest import mock

import support
from moe_frontend import compile as compile_mod
from moe_frontend.compile import (STAGES, MoeOptError, ToolNotFoundError, compile_ir,
                                  find_moe_opt, run_moe_opt, stage_args, verify)
from moe_frontend.layers import MoELayer, Routing


def write_tool(directory, script):
    path = os.path.join(directory, "moe-opt")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + script)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class FindToolTest(unittest.TestCase):
    def test_env_var_wins(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = write_tool(tmp, "exit 0\n")
            with mock.patch.dict(os.environ, {"MOE_TOOLS_DIR": tmp}):
                self.assertEqual(find_moe_opt(), path)

    def test_path_then_build_dir(self):
        with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as empty:
            path = write_tool(tmp, "exit 0\n")
            env = {"MOE_TOOLS_DIR": empty, "PATH": tmp}
            with mock.patch.dict(os.environ, env):
                self.assertEqual(find_moe_opt(), path)
            with mock.patch.dict(os.environ, {"MOE_TOOLS_DIR": "", "PATH": empty}), \
                    mock.patch.object(compile_mod, "_package_build_dir", return_value=tmp):
                self.assertEqual(find_moe_opt(), path)

    def test_not_found(self):
        with tempfile.TemporaryDirectory() as empty:
            with mock.patch.dict(os.environ, {"MOE_TOOLS_DIR": empty, "PATH": empty}), \
                    mock.patch.object(compile_mod, "_package_build_dir", return_value=empty):
                with self.assertRaisesRegex(ToolNotFoundError, "MOE_TOOLS_DIR"):
                    find_moe_opt()


class RunTest(unittest.TestCase):
    def test_stage_table(self):
        self.assertEqual(STAGES["moe"], ())
        self.assertEqual(stage_args("decomposed"), ("-moe-decompose",))
        self.assertEqual(stage_args("nvvm"), ("-moe-lower-to-nvvm-pipeline",))
        with self.assertRaisesRegex(ValueError, "unknown stage 'ptx'"):
            stage_args("ptx")

    def test_passes_arguments_and_stdin(self):
        with tempfile.TemporaryDirectory() as tmp:
            tool = write_tool(tmp, 'echo "args: $*"; cat\n')
            out = compile_ir("hello\n", "decomposed", tool=tool, extra_args=["-x"])
            self.assertEqual(out, "args: -moe-decompose -x -\nhello\n")

    def test_failure_carries_stderr(self):
        with tempfile.TemporaryDirectory() as tmp:
            tool = write_tool(tmp, "echo 'error: bad op' >&2; exit 3\n")
            with self.assertRaises(MoeOptError) as ctx:
                run_moe_opt("x", tool=tool)
            self.assertEqual(ctx.exception.returncode, 3)
            self.assertIn("error: bad op", ctx.exception.stderr)
            self.assertIn("error: bad op", str(ctx.exception))

    def test_missing_tool(self):
        with self.assertRaises(ToolNotFoundError):
            run_moe_opt("x", tool="/nonexistent/moe-opt")


@unittest.skipIf(support.moe_opt_path() is None, "moe-opt is not built")
class RealToolTest(unittest.TestCase):
    def test_verifier_error_is_reported(self):
        text = MoELayer(16, 32, 4, Routing(k=2)).to_mlir()
        broken = text.replace("tensor<4x32x16xf32>", "tensor<3x32x16xf32>")
        with self.assertRaises(MoeOptError) as ctx:
            verify(broken)
        self.assertIn("w2 has 3 experts", ctx.exception.stderr)

    def test_decompose(self):
        out = compile_ir(MoELayer(16, 32, 4, Routing(k=2)).to_mlir(), "decomposed")
        for op in ("moe.route", "moe.dispatch", "moe.experts", "moe.combine"):
            self.assertIn(op, out)

    def test_every_stage(self):
        text = MoELayer(16, 32, 4, Routing(k=2)).to_mlir()
        self.assertIn("moe.expert_ffn", compile_ir(text, "fused"))
        self.assertIn("scf.parallel", compile_ir(text, "loops"))
        self.assertIn("llvm.func", compile_ir(text, "llvm"))
        nvvm = compile_ir(text, "nvvm")
        self.assertIn("#nvvm.target", nvvm)
        self.assertIn(".target sm_80", nvvm)
        self.assertIn("amdgcn-amd-amdhsa--gfx90a", compile_ir(text, "rocdl"))


if __name__ == "__main__":
    unittest.main()
