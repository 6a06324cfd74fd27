"""run.py's errors and results: bad data and unknown presets end with `error: ...` and exit 2, a preset that
exists but fails to import is reported as its own error, and the results list the modality ablation."""

import dataclasses
import shutil
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


# Issue 21: every user error that is knowable before training is one line naming the key, exit 2, and nothing
# is trained (no run folder). A tiny synthetic dataset, generated once for this module.
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture
def tiny_args(tmp_path, data_root):
    return [
        f"--run.out={tmp_path / 'runs'}",
        "--run.name=bad",
        f"--data.root={data_root}",
        "--run.wandb=disabled",
        "--data.synthetic.identities=8",
        "--data.synthetic.samples_per_identity=6",
        "--data.voice_seconds=0.5",
        "--data.batch_size=8",
        "--model.dim=32",
        "--optim.epochs=1",
    ]


def fails_before_training(args: list[str], tmp_path: Path, capsys) -> str:
    """Run run.py with `args`; assert exit 2, one `error: ` line, no traceback, no run folder; return the line."""
    code = run.main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "runs" / "bad").exists()  # nothing trained, no record
    return err.strip()


BAD_VALUES = [
    (["--data.image_size=0"], "error: data.image_size must be positive, got 0"),
    (["--model.dim=0"], "error: model.dim must be positive, got 0"),
    (["--data.voice_seconds=-1"], "error: data.voice_seconds must be positive, got -1.0"),
    (["--data.text_len=0"], "error: data.text_len must be positive, got 0"),
    (["--data.sample_rate=0"], "error: data.sample_rate must be positive, got 0"),
    (["--optim.lr=inf"], "error: optim.lr must be a finite positive number, got inf"),
    (["--optim.lr=nan"], "error: optim.lr must be a finite positive number, got nan"),
    (["--optim.accumulate=3"], "error: optim.accumulate=3 must divide data.batch_size=8 (micro-batches of one size)"),
    (
        ["--data.synthetic.samples_per_identity=2"],
        "error: data.synthetic.samples_per_identity must be at least 3 (one sample each for train, val and test)",
    ),
    (["--data.batch_size=1000"], "error: data.batch_size=1000 is larger than the 32 training samples of "),
    (["--data.tokenizer=/nope"], "error: data.tokenizer: no tokenizer at /nope"),
    (["--model.text=text_hf", "--model.text_path=/nope"], "error: model.text_path: no model folder at /nope"),
    (["--model.init_from=/nope"], "error: model.init_from: /nope/record.json does not exist"),
    (
        ["--fusion=late", "--modalities=face,voice"],  # one val sample per person: 1:2 matching would fail at the end
        "error: data.split=closed: the val split of ",
    ),
]


@pytest.mark.parametrize("args, line", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_before_training(tiny_args, tmp_path, capsys, args, line):
    assert fails_before_training(tiny_args + args, tmp_path, capsys).startswith(line)


def test_a_device_that_does_not_exist_is_one_line(tiny_args, tmp_path, capsys):
    from research.torch.predict import device_problem

    if device_problem("cuda") is None:
        pytest.skip("this machine has a GPU")
    line = fails_before_training([*tiny_args, "--run.device=cuda"], tmp_path, capsys)
    assert line == "error: run.device=cuda: this machine has 0 CUDA GPU(s) that torch can use"


def test_a_modality_the_manifest_lacks_is_one_line(tiny_args, tmp_path, data_root, capsys):
    """The issue's `--modalities face,text` on a voice-only manifest trained with loss 0.0 to chance."""
    from research.config_parse import apply_overrides
    from research.data import manifest, synthetic

    folder = synthetic.ensure(apply_overrides(run.preset("default"), tiny_args).data).parent
    rows = [
        dataclasses.replace(r, face="", text="", voice=str(folder / r.voice))
        for r in manifest.read(folder / "manifest.csv")
    ]
    voices = manifest.write(tmp_path / "voices.csv", rows)
    line = fails_before_training([*tiny_args, f"--dataset={voices}", "--modalities=face,text"], tmp_path, capsys)
    assert (
        line == f"error: model.modalities: no training sample of manifest {voices} has a face (its modalities: voice)"
    )


def test_a_good_config_passes_the_checks_before_training(tiny_args):
    from research import validate
    from research.config_parse import apply_overrides
    from research.torch.predict import device_problem

    for extra in ([], ["--modalities=face,voice", "--data.split=open"], ["--run.device=cpu", "--optim.accumulate=4"]):
        validate.before_training(apply_overrides(run.preset("default"), tiny_args + extra), device_problem)


def nan_in_a_training_voice(folder: Path, rows: list) -> str:
    import numpy as np
    import soundfile

    row = next(r for r in rows if r.split == "train" and r.voice)
    audio, rate = soundfile.read(folder / row.voice, dtype="float32")
    audio[len(audio) // 2] = np.nan
    soundfile.write(folder / row.voice, audio, rate, subtype="FLOAT")
    where = f"(manifest {folder / 'manifest.csv'} line {row.line}"
    return f"voice file {folder / row.voice} has non-finite samples (NaN or inf) {where}"


def nul_transcript(folder: Path, rows: list) -> str:
    row = next(r for r in rows if r.text)
    (folder / row.text).write_bytes(b"\x00" * 8)
    return f"empty transcript {folder / row.text} (manifest {folder / 'manifest.csv'} line {row.line}"


def latin1_manifest(folder: Path, rows: list) -> str:
    path = folder / "manifest.csv"
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(rows[1].subject.encode(), b"Ren\xe9e", 1)
    path.write_bytes(b"\n".join(lines))
    return f"manifest {path} line 3: not UTF-8 (byte 0xe9); save the file as UTF-8"


@pytest.mark.parametrize("damage", [nan_in_a_training_voice, nul_transcript, latin1_manifest])
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_bad_sample_is_one_line_naming_the_file_and_line(tiny_args, tmp_path, capsys, damage, on_error):
    """The issue's NaN sample on a training row died at step 1 naming no file; now it is named before training
    (with data.on_error=skip a sample problem is a counted skip instead; a manifest not in UTF-8 never is)."""
    from research.config_parse import apply_overrides
    from research.data import manifest, synthetic

    source = synthetic.ensure(apply_overrides(run.preset("default"), tiny_args).data).parent
    folder = shutil.copytree(source, tmp_path / "data")
    expected = damage(folder, manifest.read(source / "manifest.csv"))
    args = [*tiny_args, f"--dataset={folder / 'manifest.csv'}", f"--data.on_error={on_error}"]
    if on_error == "skip" and damage is not latin1_manifest:
        from research.data import loader

        cfg = apply_overrides(run.preset("default"), args)
        assert loader.load(cfg.data).skipped == 1  # what the run would train on: one sample fewer
        return
    assert fails_before_training(args, tmp_path, capsys).startswith(f"error: {expected}")


# A run that reads its samples while training (data.cache=false) does not decode them first: it reads the result
# that `prepare.py check` keeps beside the manifest (research/data/checked.py).
@pytest.fixture
def streamed(tiny_args, tmp_path):
    """(args of a streamed run on a copy of the tiny dataset with a NaN training voice, its manifest, the line)."""
    from research.config_parse import apply_overrides
    from research.data import manifest, synthetic

    source = synthetic.ensure(apply_overrides(run.preset("default"), tiny_args).data).parent
    folder = shutil.copytree(source, tmp_path / "data")
    expected = nan_in_a_training_voice(folder, manifest.read(source / "manifest.csv"))
    path = folder / "manifest.csv"
    return [*tiny_args, f"--dataset={path}", "--data.cache=false"], path, expected


def check_manifest(path: Path, capsys) -> None:
    from experiments import prepare

    assert prepare.main(["check", str(path), "--image-size=32", "--sample-rate=16000"]) == 1  # one problem
    capsys.readouterr()


def test_a_streamed_run_with_a_bad_sample_the_check_found_stops_before_training(streamed, tmp_path, capsys):
    args, path, expected = streamed
    check_manifest(path, capsys)
    assert fails_before_training(args, tmp_path, capsys).startswith(f"error: {expected}")


def test_a_streamed_run_skips_what_the_check_found_with_on_error_skip(streamed, capsys):
    from research import validate
    from research.config_parse import apply_overrides

    args, path, expected = streamed
    check_manifest(path, capsys)
    validate.before_training(apply_overrides(run.preset("default"), [*args, "--data.on_error=skip"]))
    err = capsys.readouterr().err
    assert err.startswith(f"warning: data.on_error=skip: 1 of 48 samples of {path} are skipped, e.g. {expected}")
    assert err.count("\n") == 1


def test_a_streamed_run_on_samples_not_checked_warns_once(streamed, capsys):
    """No check result, or one of other manifest content: a warning, not an error (a large dataset must train)."""
    from research import validate
    from research.config_parse import apply_overrides

    args, path, _ = streamed
    cfg = apply_overrides(run.preset("default"), args)
    warning = (
        f"warning: the samples of manifest {path} were not checked (data.cache=false: a bad one stops training "
        f"when it is read); check them with: python experiments/prepare.py check {path} --image-size 32 "
        "--sample-rate 16000\n"
    )
    validate.before_training(cfg)
    assert capsys.readouterr().err == warning
    check_manifest(path, capsys)
    path.write_bytes(path.read_bytes() + b"\n")  # other content: the result is not this manifest's
    validate.before_training(cfg)
    assert capsys.readouterr().err == warning
