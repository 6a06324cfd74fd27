"""A stub in place of run.py for the sweep runner tests: it takes `--key=value` arguments, logs them, and
writes a run record whose metric is a known function of its parameters (val/acc = 10 x + seed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

STUB = """
import json, os, sys, time
from pathlib import Path

args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
with open(os.environ["STUB_CALLS"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
config = {}
for key, value in args.items():
    *path, leaf = key.split(".")
    node = config
    for part in path:
        node = node.setdefault(part, {})
    node[leaf] = value
run_dir = Path(args["run.out"]) / args["run.name"]
record = {"name": args["run.name"], "status": "running", "config": config, "summary": {}, "started_at": "now"}
(run_dir / "record.json").write_text(json.dumps(record))
point = f"x={args.get('x')}"
if point == os.environ.get("STUB_HANG"):
    time.sleep(600)
if point == os.environ.get("STUB_FAIL"):
    record.update(status="failed", error="stub failure")
    (run_dir / "record.json").write_text(json.dumps(record))
    sys.exit(1)
record.update(status="finished", summary={"val/acc": 10 * float(args["x"]) + float(args.get("run.seed", 0))})
(run_dir / "record.json").write_text(json.dumps(record))
"""


class Stub:
    """The stub program in one test's folder, and helpers to write sweep files, run sweep.py, read calls."""

    @staticmethod
    def value(params: dict) -> float:
        """What the stub reports for its parameters, written independently of it."""
        return 10 * float(params["x"]) + float(params.get("run.seed", 0))

    def __init__(self, folder: Path):
        self.folder, self.out, self.log = folder, folder / "runs", folder / "calls.jsonl"
        self.program = folder / "stub_run.py"
        self.program.write_text(STUB)
        self.env = os.environ | {"STUB_CALLS": str(self.log)}

    def sweep_file(self, name: str, method: str, parameters: dict, **extra) -> Path:
        spec = {"name": name, "program": str(self.program), "method": method, "parameters": parameters}
        spec |= {"metric": {"name": "val/acc", "goal": "maximize"}} | extra
        path = self.folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    def command(self, path: Path, *options: str) -> list[str]:
        return [sys.executable, str(ROOT / "experiments" / "sweep.py"), str(path), "--out", str(self.out), *options]

    def run(self, path: Path, *options: str, **env: str) -> subprocess.CompletedProcess:
        command = self.command(path, *options)
        return subprocess.run(command, env=self.env | env, capture_output=True, text=True, timeout=120)

    def calls(self) -> list[list[str]]:
        """The argument list of every stub call so far."""
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


@pytest.fixture
def stub(tmp_path) -> Stub:
    return Stub(tmp_path)


@pytest.fixture(scope="session")
def export_run(tmp_path_factory) -> dict:
    """For test_export_torch.py and test_export_jax.py: a tiny trained torch face + voice run (cross_attn, so a
    modality's embedding is the fused one with the other masked), the embeddings by research/embedding.py (what
    embed.py writes) of three of its test samples (voice, face, both: None), and two batches of those samples as a
    client gives them: three voices padded 0.25 s past the longest, and the shortest of them alone (unpadded), with
    int64 or int32 lengths; faces as the loader gives them."""
    import importlib

    import numpy as np

    from research import embedding
    from research.config import Config
    from research.config_parse import apply_overrides
    from research.data import manifest, synthetic
    from research.restore import restore

    root = tmp_path_factory.mktemp("export")
    cfg = apply_overrides(Config(), [
        f"--run.out={root / 'runs'}", f"--data.root={root / 'data'}", "--run.wandb=disabled", "--run.progress=false",
        "--data.synthetic.identities=6", "--data.synthetic.samples_per_identity=4", "--data.voice_seconds=0.5",
        "--data.batch_size=8", "--model.dim=16", "--model.layers=1", "--model.fusion_layers=1", "--optim.epochs=1",
        "--eval.plots=false", "--modalities=face,voice", "--fusion=cross_attn", "--run.name=fv",
    ])  # fmt: skip
    run_dir = Path(cfg.run.out) / "fv"
    importlib.import_module("research.torch.trainer").train_and_evaluate(cfg, run_dir, "fv")
    restored = restore(run_dir, "cpu", decoded=False)
    data = synthetic.ensure(cfg.data)
    rows = [r for r in manifest.read(data) if r.split == "test"][:3]
    samples = embedding.decode(data.parent, rows, restored.cfg, progress=False)
    want = {}
    for modality in ("voice", "face", None):
        how = {"modality": modality, "progress": False}
        found = embedding.embed(restored.backend, restored.model, restored.cfg, restored.device, samples, **how)
        want[modality] = np.stack([found[r.id] for r in rows])  # (3, E)
    batches = []
    for chosen, extra in (([0, 1, 2], 4000), ([int(np.argmin([len(s.voice) for s in samples]))], 0)):
        voices = [samples[k].voice for k in chosen]
        voice = np.zeros((len(chosen), max(map(len, voices)) + extra), np.float32)  # (B, S)
        for i, v in enumerate(voices):
            voice[i, : len(v)] = v
        face = np.stack([samples[k].face for k in chosen]).astype(np.float32) / 255.0  # (B, 3, H, W)
        batches.append((chosen, {"face": face, "voice": voice, "voice_len": np.array([len(v) for v in voices])}))
    return {"dir": run_dir, "want": want, "batches": batches}
