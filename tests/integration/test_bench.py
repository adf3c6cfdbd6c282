"""`make bench` cannot rot: the benchmark runs end to end at a tiny size (figures are not checked;
benchmarks are scripts, not timed tests), and its other entry points still import."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from helpers import ROOT


def test_the_benchmark_runs_end_to_end_at_a_tiny_size() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--profiles", "300", "--small", "100", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("profiles") and "300 (" in line for line in lines), result.stdout
    assert any(line.startswith("upsert requests") for line in lines), result.stdout
    assert any("status succeeded" in line for line in lines), result.stdout


@pytest.mark.parametrize("module", ["bench.export_once", "bench.hotpath", "bench.micro", "bench.minimal", "bench.memory"])
def test_every_benchmark_script_imports(module: str) -> None:
    importlib.import_module(module)
