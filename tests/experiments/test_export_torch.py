"""experiments/export.py, torch formats: the ONNX file run by onnxruntime.InferenceSession and the .pt2 program
loaded by torch.export.load give the embeddings research/embedding.py computes for the run (what embed.py writes)
within 1e-4, at two batch sizes and two voice lengths (the axes are dynamic), and a voice padded in a batch equals
the voice alone (the lengths input is honoured): the fused model in ONNX, voice and face in pt2. The run:
conftest.py export_run. Errors are one line."""

import importlib.util
import json

import onnxruntime
import torch

from experiments import export
from tests.experiments.export_client import check, exported


def test_onnx_runs_in_onnxruntime_with_the_runs_embeddings(export_run, tmp_path):
    """The fused model (faces, voices and their lengths); one modality alone is exported in pt2 and stablehlo."""
    path, meta = exported(export_run, tmp_path, "onnx", None)
    assert sorted(p.name for p in tmp_path.glob(f"{path.stem}.*")) == [path.name, f"{path.name}.json"]  # one file
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [x.name for x in session.get_inputs()] == [x["name"] for x in meta["inputs"]]
    check(export_run, None, meta, lambda arrays: session.run(["embeddings"], arrays)[0])
    assert [x["name"] for x in meta["inputs"]] == ["face", "voice", "voice_len"]
    assert meta["inputs"][0]["shape"] == ["batch", 3, 32, 32] and meta["output"]["shape"] == ["batch", 16]
    assert meta["sample_rate"] == 16000 and meta["image_size"] == 32 and meta["inputs"][2]["dtype"] == "int64"


def test_pt2_runs_in_torch_export_load_with_the_runs_embeddings(export_run, tmp_path):
    threads = torch.get_num_threads()
    for modality in ("voice", "face"):
        path, meta = exported(export_run, tmp_path, "pt2", modality)
        module = torch.export.load(path).module()
        with torch.no_grad():
            check(
                export_run, modality, meta, lambda arrays, m=module: m(*map(torch.from_numpy, arrays.values())).numpy()
            )
    assert torch.get_num_threads() == threads


def test_errors_are_one_line(export_run, tmp_path, capsys, monkeypatch):
    out = ["--out", str(tmp_path / "x.onnx")]
    assert export.main(["--run", str(tmp_path / "nothing"), "--format", "onnx", *out]) == 2
    assert export.main(["--run", str(export_run["dir"]), "--format", "onnx", "--modality", "text", *out]) == 2
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "onnxscript" else find_spec(name))
    assert export.main(["--run", str(export_run["dir"]), "--format", "onnx", *out]) == 2
    monkeypatch.undo()
    vit = tmp_path / "vit"  # a run whose voice encoder is voice_vit (its record's config; the weights are not read)
    vit.mkdir()
    record = json.loads((export_run["dir"] / "record.json").read_text())
    record["config"]["model"]["voice"] = "voice_vit"
    (vit / "record.json").write_text(json.dumps(record))
    (vit / "best.safetensors").write_bytes(b"")
    assert export.main(["--run", str(vit), "--format", "pt2", *out]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 4 and all(e.startswith("error: ") for e in errors), errors
    assert "record.json" in errors[0] and "face, voice" in errors[1] and "onnxscript" in errors[2]
    assert "voice_vit" in errors[3] and "stablehlo" in errors[3]
    assert not (tmp_path / "x.onnx").exists()
