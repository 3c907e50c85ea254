# RUN: %PYTHON -m unittest discover -s %moe_src_root/python-frontend/tests -v 2>&1 | FileCheck %s

# The frontend's Python unit tests (attribute rendering, Hugging Face config
# mapping, errors, CLI); they use the moe-opt that lit puts in MOE_TOOLS_DIR.
# Running this file directly runs the same suite.

# CHECK: test_mapping (test_hf.DeepseekV3Test
# CHECK: Ran {{[0-9]+}} tests
# CHECK-NEXT: {{^$}}
# CHECK-NEXT: OK

if __name__ == "__main__":
    import os
    import sys
    import unittest

    here = os.path.dirname(os.path.abspath(__file__))
    tests = os.path.join(here, "..", "..", "python-frontend", "tests")
    result = unittest.main(module=None, argv=["unittest", "discover", "-s", tests, "-v"],
                           exit=False).result
    sys.exit(0 if result.wasSuccessful() else 1)
