"""run.py's errors and results: bad data and unknown presets end with `error: ...` and exit 2, a preset that
exists but fails to import is reported as its own error, and the results list the modality ablation."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import experiments.configs  # noqa: E402
from experiments import run  # noqa: E402


def test_a_dataset_error_prints_error_and_exits_2(tmp_path, capsys):
    manifest = tmp_path / "people.csv"
    manifest.write_text("this is not a manifest\n")
    code = run.main([f"--dataset={manifest}", f"--run.out={tmp_path}", "--run.wandb=disabled", "--run.name=bad"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and str(manifest) in err
    assert "Traceback" not in err


def test_an_unknown_preset_is_a_config_error(capsys):
    assert run.main(["--config", "no_such_preset"]) == 2
    assert "unknown preset 'no_such_preset'" in capsys.readouterr().err


def test_a_failing_import_inside_an_existing_preset_is_not_called_unknown(tmp_path, monkeypatch):
    (tmp_path / "broken.py").write_text("import no_such_package_xyz\n")
    monkeypatch.setattr(experiments.configs, "__path__", [*experiments.configs.__path__, str(tmp_path)])
    with pytest.raises(ModuleNotFoundError) as err:
        run.main(["--config=broken"])
    assert err.value.name == "no_such_package_xyz"
    sys.modules.pop("experiments.configs.broken", None)


def test_the_results_list_the_test_time_modality_ablation(tmp_path, capsys):
    summary = {"val/acc": 0.9, "test/acc": 0.8, "test/without_face/acc": 0.5, "test/without_voice/acc": 0.75}
    summary |= {"test/without_face/macro_f1": 0.4, "test/fair/gender/acc/f": 0.7, "params": 1000, "best_epoch": 3}
    run.print_results(summary, tmp_path)
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    for key in ("test/acc", "test/without_face/acc", "test/without_voice/acc", "test/without_face/macro_f1"):
        assert [key, f"{summary[key]:.4f}"] in lines
    assert not any(line and line[0].startswith("test/fair") for line in lines)  # breakdowns stay in the files
