"""The diagnostic scripts under scripts/ run (each is cited by a docs page as the way to reproduce a
measurement); they are not imported by the library, so nothing else would notice one breaking."""
import importlib.util
import pathlib

import pytest

SCRIPTS = pathlib.Path(__file__).resolve().parent.parent / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("one_thread")
def test_update_rank_reports_size_and_rank_per_width(capsys):
    update_rank = _load("update_rank")  # two steps: the zero readout passes no gradient back on the first
    sizes = update_rank.updates("mlp", "sgd", [32, 64], steps=2, seed=0, suffixes=["fc1.weight"])
    [(name, rows)] = sizes.items()
    assert name == "fc1.weight" and len(rows) == 2
    for op, frob, rank in rows:
        assert 0 < op <= frob * (1 + 1e-9) and rank == pytest.approx((frob / op) ** 2)
    update_rank.main(["mlp", "fc1.weight", "--optimizer", "sgd", "--widths", "32", "64", "--steps", "2"])
    assert capsys.readouterr().out.startswith("fc1.weight: op slope ")


@pytest.mark.parametrize("name", sorted(p.stem for p in SCRIPTS.glob("*.py")))
def test_every_script_imports_and_parses_its_arguments(name, capsys):
    with pytest.raises(SystemExit) as exited:
        _load(name).main(["--help"])
    assert exited.value.code == 0 and "usage:" in capsys.readouterr().out
