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
