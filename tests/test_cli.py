"""The command line (sptrace/cli.py): every subcommand's error path and one cheap success path."""
import json

import pytest

from sptrace.cli import main


pytestmark = pytest.mark.usefixtures("one_thread")


def test_report_prints_the_table_and_names_an_unknown_model(capsys):
    assert main(["report", "mlp", "--width", "32"]) == 0
    assert "fc" in capsys.readouterr().out
    assert main(["report", "no_such_model"]) == 2
    assert "sptrace: error: unknown model 'no_such_model': pass a zoo name" in capsys.readouterr().err


def pre_norm_mlp(width=64):
    """A factory for the report below: a bare module, no example_inputs()."""
    import torch

    return torch.nn.Sequential(torch.nn.LayerNorm(12), torch.nn.Linear(12, width), torch.nn.GELU(),
                               torch.nn.Linear(width, 3))


def two_inputs():
    import torch

    return torch.nn.Bilinear(4, 4, 2)


def test_report_of_a_factory_s_bare_module_infers_its_inputs(capsys):
    """module:factory may return a module without example_inputs(): traced on what sptrace infers
    (before: an error asking for (model, args)); where nothing says, parametrize's missing-inputs error."""
    assert main(["report", "tests.test_cli:pre_norm_mlp", "--width", "32"]) == 0
    out = capsys.readouterr().out
    assert "1.weight" in out and "32x12" in out
    assert main(["report", "tests.test_cli:two_inputs"]) == 2
    assert "pass example_inputs=" in capsys.readouterr().err


def test_validate_passes_on_a_tiny_mlp_and_needs_two_widths(capsys):
    code = main(["validate", "mlp", "--widths", "32", "64", "--steps", "1", "--batch-size", "4", "--seeds", "1",
                 "--no-spectral", "--baselines"])
    out = capsys.readouterr().out
    assert code == 0 and "sptrace  PASS" in out and "ntp" not in out
    assert main(["validate", "mlp", "--widths", "64"]) == 2
    assert "validate needs at least two widths" in capsys.readouterr().err


def test_validate_attention_fix_reaches_parametrize(monkeypatch, capsys):
    import sptrace.validation.models as models

    seen, parametrize = [], models.parametrize
    monkeypatch.setattr(models, "parametrize", lambda *a, **k: seen.append(k["attention_fix"]) or parametrize(*a, **k))
    code = main(["validate", "gpt", "--widths", "32", "64", "--steps", "1", "--batch-size", "4", "--seeds", "1",
                 "--no-spectral", "--baselines", "--form", "base", "--option", "n_head=2", "--attention-fix"])
    assert code != 2 and "sptrace " in capsys.readouterr().out  # ran: the verdict at 1 seed and 1 step is not the point
    assert seen and all(seen)


def test_transfer_writes_its_json_and_plots(tmp_path, capsys):
    code = main(["transfer", "mlp", "--widths", "32", "64", "--log2-lrs", "-8", "-7", "--steps", "3",
                 "--batch-size", "8", "--eval-batches", "1", "--threads", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "## sptrace" in out and "## sp " in out
    data = json.loads((tmp_path / "mlp-adam-lr-transfer.json").read_text())
    assert set(data["results"]) == {"sptrace", "sp"} and data["results"]["sp"]["widths"] == [32, 64]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["mlp-adam-lr-transfer-sp.png",
                                                               "mlp-adam-lr-transfer-sptrace.png"]


def test_transfer_rejects_a_bad_option_and_a_missing_grid(capsys):
    assert main(["transfer", "mlp", "--widths", "32", "--log2-lrs", "-8", "-7", "--option", "n_layer"]) == 2
    assert "--option wants key=value" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse: --log2-lrs is required
        main(["transfer", "mlp", "--widths", "32"])
    assert exit_.value.code == 2 and "--log2-lrs" in capsys.readouterr().err
