"""Tests for the command line, ``python -m experiments``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments.__main__ import main
from sptrace.types import SptraceError

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]


def test_fig2_cli_classes(tmp_path, capsys):
    """`--classes` takes digit groups; `--name` names the outputs; the fit covers every width."""
    rc = main(["fig2", "--widths", "16", "32", "--steps", "3", "--seeds", "1", "--classes", "0,1,2,3,4",
               "5,6,7,8,9", "--name", "grp", "--out", str(tmp_path)])
    d = json.loads((tmp_path / "grp.json").read_text())
    assert rc == (0 if d["passed"] else 1)  # the exit status is the verdict the JSON records
    out = capsys.readouterr().out
    assert f"passed (±{d['tol']}) : {d['passed']};" in out and "| ntp | spectral_change (acceptance)" in out
    assert d["classes"] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]] and d["fit_widths"] == [16, 32]


def test_fig1_cli_and_threads(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    before = torch.get_num_threads()
    assert main(["fig1", "--batch-sizes", "1", "4", "--width", "16", "--trials", "1", "--threads", "1",
                 "--out", str(tmp_path)]) == 0
    assert torch.get_num_threads() == before  # --threads holds only while the command runs
    assert (tmp_path / "fig1.json").exists()
    assert "| 4 |" in capsys.readouterr().out


def test_lr_cli(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["lr", "--param", "ntp", "--widths", "16", "32", "--log2-lrs", "-2", "0", "--steps", "3",
                 "--out", str(tmp_path)]) == 0
    assert (tmp_path / "lr_ntp.json").exists() and (tmp_path / "lr_ntp.png").exists()
    assert set(json.loads(capsys.readouterr().out.splitlines()[0])) == {"16", "32"}
    with pytest.raises(SystemExit):  # argparse: --param offers sptrace, ntp, sp
        main(["lr", "--param", "mup", "--out", str(tmp_path)])


def test_cli_errors_name_the_option(tmp_path):
    with pytest.raises(SptraceError, match="--seeds-at '16:1': expected WIDTH=K"):
        main(["fig2", "--widths", "16", "--seeds-at", "16:1", "--out", str(tmp_path)])
    with pytest.raises(SptraceError, match="--classes 0 a: expected two digits"):
        main(["fig2", "--widths", "16", "--classes", "0", "a", "--out", str(tmp_path)])
    with pytest.raises(SptraceError, match=r"seeds_at names widths \[64\]"):
        main(["fig2", "--widths", "16", "32", "--seeds-at", "64=1", "--out", str(tmp_path)])


def test_module_entry_point(tmp_path):
    """`python -m experiments` prints a user error as one line, without a traceback."""
    proc = subprocess.run([sys.executable, "-m", "experiments", "fig2", "--widths", "16", "--seeds-at", "16:1",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert "python -m experiments: --seeds-at '16:1'" in proc.stderr and "Traceback" not in proc.stderr
