"""The benchmark package's parts: no import circle, the report never pulls in the runner."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(module: str) -> set[str]:
    code = (f"import sys, {module}; "
            "print(' '.join(m for m in sys.modules if m.startswith('aigi.benchmark')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_report_does_not_import_the_runner():
    loaded = _loaded_after("aigi.benchmark.report")
    assert "aigi.benchmark.report" in loaded and "aigi.benchmark.plan" in loaded
    assert "aigi.benchmark.run" not in loaded, loaded


def test_planning_needs_only_the_protocol():
    assert _loaded_after("aigi.benchmark.plan") == {"aigi.benchmark", "aigi.benchmark.plan", "aigi.benchmark.protocol"}
