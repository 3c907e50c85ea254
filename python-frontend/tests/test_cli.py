"""The `python3 -m moe_frontend` command line."""

import contextlib
import io
import json
import os
import tempfile
import unittest

import support
from moe_frontend.__main__ import main
from moe_frontend.presets import get_preset


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse usage errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


class CliTest(unittest.TestCase):
    def test_list_presets(self):
        code, out, _ = run(["--list-presets"])
        self.assertEqual(code, 0)
        self.assertIn("mixtral-small", out.split())

    def test_preset_to_stdout(self):
        code, out, _ = run(["--preset", "mixtral-small", "--layers", "1", "--tokens", "8"])
        self.assertEqual(code, 0)
        self.assertIn("func.func @mixtral(", out)
        self.assertIn("tensor<8x64xf32>", out)
        self.assertEqual(out.count("moe.layer "), 1)

    def test_hf_config_file_to_output(self):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = os.path.join(tmp, "config.json")
            with open(cfg, "w") as f:
                json.dump(get_preset("qwen2-moe-small"), f)
            out_path = os.path.join(tmp, "out.mlir")
            code, out, _ = run(["--hf-config", cfg, "--dtype", "bf16", "--hidden-size", "32",
                                "--set", "num_experts=4", "-o", out_path])
            self.assertEqual(code, 0)
            self.assertEqual(out, "")
            with open(out_path) as f:
                text = f.read()
            self.assertIn("tensor<?x32xbf16>", text)
            self.assertIn("shared_gate(", text)
            self.assertIn("tensor<32x4xbf16>", text)

    def test_errors(self):
        code, _, err = run(["--preset", "nope"])
        self.assertEqual(code, 1)
        self.assertIn("unknown preset", err)
        code, _, err = run(["--preset", "mixtral-small", "--set", "model_type=llama"])
        self.assertEqual(code, 1)
        self.assertIn("unsupported model_type", err)
        code, _, _ = run(["--tokens", "0", "--preset", "mixtral-small"])
        self.assertEqual(code, 2)
        code, _, _ = run([])
        self.assertEqual(code, 2)

    @unittest.skipIf(support.moe_opt_path() is None, "moe-opt is not built")
    def test_decompose_and_verify(self):
        code, out, err = run(["--preset", "switch-small", "--decompose"])
        self.assertEqual(code, 0, err)
        self.assertIn("moe.dispatch", out)
        self.assertNotIn("moe.layer", out)
        code, out, err = run(["--preset", "deepseek-v3-small", "--verify"])
        self.assertEqual(code, 0, err)
        self.assertIn("moe.layer", out)


if __name__ == "__main__":
    unittest.main()
