"""Tests of the textual IR builder (syntax only)."""

import unittest

import support  # noqa: F401  (sets up sys.path)
from moe_frontend.ir import (Function, Module, Namer, TensorType, affine_map, format_float,
                             format_string)


class FormatFloatTest(unittest.TestCase):
    def test_matches_dialect_printer(self):
        # Same strings the dialect's printDouble produces.
        cases = {1e-20: "1.0e-20", 2.5: "2.5", 1.0: "1.0", 0.01: "0.01", 1e-6: "1.0e-06",
                 0.0: "0.0", 1.702: "1.702", 100.0: "1.0e+02", 1e21: "1.0e+21",
                 1 / 3: "0.3333333333333333"}
        for value, text in cases.items():
            with self.subTest(value=value):
                self.assertEqual(format_float(value), text)

    def test_round_trips(self):
        for value in (0.1, 2.0 / 3.0, 123456.789, 5e-324, 1.7976931348623157e308):
            self.assertEqual(float(format_float(value)), value)
            self.assertIn(".", format_float(value))

    def test_rejects_non_finite(self):
        for value in (float("inf"), float("nan")):
            with self.assertRaises(ValueError):
                format_float(value)


class TensorTypeTest(unittest.TestCase):
    def test_printing(self):
        self.assertEqual(str(TensorType((None, 64), "f32")), "tensor<?x64xf32>")
        self.assertEqual(str(TensorType((8, 64, 128), "bf16")), "tensor<8x64x128xbf16>")
        self.assertEqual(str(TensorType((), "f16")), "tensor<f16>")

    def test_invalid(self):
        with self.assertRaises(ValueError):
            TensorType((-1, 4), "f32")
        with self.assertRaises(ValueError):
            TensorType((4,), "float")


class NamerTest(unittest.TestCase):
    def test_unique_and_sanitised(self):
        n = Namer()
        self.assertEqual(n.fresh("layers.0.w1"), "layers.0.w1")
        self.assertEqual(n.fresh("layers.0.w1"), "layers.0.w1_1")
        self.assertEqual(n.fresh("layers.0.w1"), "layers.0.w1_2")
        self.assertEqual(n.fresh("a b/c"), "a_b_c")
        self.assertEqual(n.fresh("0x"), "v0x")

    def test_suffix_collision(self):
        n = Namer()
        self.assertEqual(n.fresh("x_1"), "x_1")
        self.assertEqual(n.fresh("x"), "x")
        self.assertEqual(n.fresh("x"), "x_2")


class FunctionTest(unittest.TestCase):
    def test_render(self):
        m = Module()
        f = m.add_function("f")
        t = TensorType((None, 4), "f32")
        x = f.add_argument("x", t, {"moe.name": format_string("in")})
        f.ret([x])
        text = m.render()
        self.assertIn('func.func @f(%x: tensor<?x4xf32> {moe.name = "in"}) -> tensor<?x4xf32> {',
                      text)
        self.assertIn("return %x : tensor<?x4xf32>", text)
        self.assertTrue(text.startswith("module {"))

    def test_constants_are_hoisted_and_shared(self):
        f = Function("g")
        a = f.float_constant(1.0)
        b = f.float_constant(1.0)
        self.assertIs(a, b)
        f.emit("%dummy = arith.addf %cst, %cst : f32")
        body = f.render().splitlines()
        self.assertIn("arith.constant 1.0 : f32", body[1])

    def test_unclosed_region(self):
        f = Function("h")
        f.open_region("%r = scf.execute_region -> i32")
        with self.assertRaises(RuntimeError):
            f.render()

    def test_string_escapes(self):
        self.assertEqual(format_string('a"b\\c\n'), '"a\\"b\\\\c\\n"')

    def test_bad_names(self):
        with self.assertRaises(ValueError):
            Function("bad name")
        m = Module()
        m.add_function("f")
        with self.assertRaises(ValueError):
            m.add_function("f")

    def test_affine_map(self):
        self.assertEqual(affine_map(2, ["d0"]), "affine_map<(d0, d1) -> (d0)>")


if __name__ == "__main__":
    unittest.main()
