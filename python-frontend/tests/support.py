"""Shared test helpers.

Makes `moe_frontend` importable when the suite is run from anywhere
(`python3 -m unittest discover -s python-frontend/tests`), and tells tests
whether a moe-opt binary is available for the checks that need one.
"""

import os
import sys

FRONTEND_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if FRONTEND_DIR not in sys.path:
    sys.path.insert(0, FRONTEND_DIR)

from moe_frontend.compile import ToolNotFoundError, find_moe_opt  # noqa: E402


def moe_opt_path():
    """The moe-opt binary, or None when it has not been built."""
    try:
        return find_moe_opt()
    except ToolNotFoundError:
        return None
