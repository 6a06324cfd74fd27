"""Every bad input of issue 21 through the real command lines, and the table of what each gave.

    python benchmarks/bad_inputs.py                 # prints the table and writes it into docs/robustness.md
    python benchmarks/bad_inputs.py --no-write
    python benchmarks/bad_inputs.py --no-write --only Latin-1   # the cases whose name contains this text

Each case runs `experiments/run.py` (or `prepare.py check`, or a decode) in its own process on a tiny copy of
the embedded dataset, and records the exit status, the first `error:` / `warning:` line (or the last line
printed) and whether a Python traceback appeared. A user error must end with one line and exit 2, without a
traceback; the count of tracebacks among user errors is printed last and must be zero. Takes a few minutes.
"""

from __future__ import annotations

import argparse
import http.server
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from research.config import DataConfig, SyntheticConfig  # noqa: E402
from research.data import manifest, synthetic  # noqa: E402

DOC = ROOT / "docs" / "robustness.md"
BEGIN, END = "<!-- bad_inputs.py: begin -->", "<!-- bad_inputs.py: end -->"
RUN, CHECK = "experiments/run.py", ["experiments/prepare.py", "check"]


@dataclass
class Case:
    name: str  # the input, as a user would describe it
    argv: list[str]  # after `python`
    expect: int  # the right exit status: 2 = a user error, one line; 0 = valid input, trained; 1 = check found problems
    env: dict[str, str] = field(default_factory=dict)
    damage: tuple[str, Path] | None = None  # ("pickle" / "corrupt" / "deleted", run folder): a copy of the stopped run


def tiny(out: Path, data_root: Path, name: str) -> list[str]:
    return [
        RUN,
        f"--run.out={out}",
        f"--data.root={data_root}",
        f"--run.name={name}",
        "--run.wandb=disabled",
        "--run.progress=false",
        "--data.synthetic.identities=8",
        "--data.synthetic.samples_per_identity=6",
        "--data.voice_seconds=0.5",
        "--data.batch_size=8",
        "--model.dim=16",
        "--model.layers=1",
        "--model.fusion_layers=1",
        "--optim.epochs=1",
        "--eval.plots=false",
        "--eval.trials=100",
    ]


def datasets(tmp: Path) -> dict[str, Path]:
    """The tiny dataset and the damaged manifests the cases read: name -> manifest."""
    cfg = DataConfig(
        root=str(tmp / "data"), voice_seconds=0.5, synthetic=SyntheticConfig(identities=8, samples_per_identity=6)
    )
    source = synthetic.ensure(cfg).parent
    rows = manifest.read(source / "manifest.csv")

    def copy(name: str, change=None) -> Path:
        folder = shutil.copytree(source, tmp / name)
        if change:
            change(folder, rows)
        return folder / "manifest.csv"

    def latin1(folder, rows):
        path = folder / "manifest.csv"
        lines = path.read_bytes().split(b"\n")
        lines[5] = lines[5].replace(rows[4].subject.encode(), b"Ren\xe9e", 1)
        path.write_bytes(b"\n".join(lines))

    def bom(folder, rows):
        (folder / "manifest.csv").write_bytes(b"\xef\xbb\xbf" + (folder / "manifest.csv").read_bytes())

    def nan_voice(folder, rows):
        row = next(r for r in rows if r.split == "test" and r.voice)
        audio, rate = soundfile.read(folder / row.voice, dtype="float32")
        audio[len(audio) // 2] = np.nan
        soundfile.write(folder / row.voice, audio, rate, subtype="FLOAT")

    def nul_text(folder, rows):
        (folder / next(r for r in rows if r.text).text).write_bytes(b"\x00" * 8)

    def voice_only(folder, rows):
        manifest.write(folder / "manifest.csv", [replace(r, face="", text="") for r in rows])

    changes = {"latin1": latin1, "bom": bom, "nan": nan_voice, "nul": nul_text, "voices": voice_only}
    return {name: copy(name, change) for name, change in changes.items()}


def grey16(tmp: Path) -> list[str]:
    """The issue's 16-bit greyscale PNG, decoded: mean 254.4 when clipped, 127.2 when scaled by its depth."""
    code = (
        "import numpy as np; from PIL import Image; from pathlib import Path;"
        "from research.data.decode import read_face;"
        f"p = Path('{tmp}/g.png'); Image.fromarray((np.arange(1024).reshape(32, 32) * 64).astype('u2')).save(p);"
        "print(f'decoded mean {read_face(p, 32).mean():.1f} of 255 (clipped: 254.4)')"
    )
    return ["-c", code]


def disk_full(args: list[str]) -> list[str]:
    """run.py with safetensors' writer failing as it does on a full disk (simulated: no disk is filled)."""
    code = (
        "import sys; from safetensors import SafetensorError; import research.torch.checkpoint as c\n"
        "def full(*a, **k): raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
        'message: "No space left on device" })\')\n'
        "c.save_file = full; sys.path.insert(0, '.'); from experiments import run; sys.exit(run.main(sys.argv[1:]))"
    )
    return ["-c", code, *args[1:]]


def cases(tmp: Path, port: int) -> list[Case]:
    data = datasets(tmp)
    out, root = tmp / "runs", tmp / "data"
    t = lambda name, *extra: tiny(out, root, name) + list(extra)  # noqa: E731
    resume = lambda name: Case(f"`last` checkpoint: {name}", t(name, "--optim.epochs=2"), 2, damage=(name, out / name))  # noqa: E731
    wandb = {"WANDB_BASE_URL": f"http://127.0.0.1:{port}", "WANDB_API_KEY": "0" * 40, "WANDB_SILENT": "true"}
    found = [
        Case("manifest in Latin-1, not UTF-8", t("a", f"--dataset={data['latin1']}"), 2),
        Case("the same, data.on_error=skip", t("a", f"--dataset={data['latin1']}", "--data.on_error=skip"), 2),
        Case("the same, prepare.py check", [*CHECK, str(data["latin1"])], 2),
        Case("manifest with a UTF-8 byte-order mark", t("bom", f"--dataset={data['bom']}"), 0),
        Case("float WAV with a NaN sample (test row)", t("a", f"--dataset={data['nan']}"), 2),
        Case("the same, data.on_error=skip", t("nan", f"--dataset={data['nan']}", "--data.on_error=skip"), 0),
        Case("the same, data.cache=false, not checked", t("nan2", f"--dataset={data['nan']}", "--data.cache=false"), 2),
        Case("the same, prepare.py check", [*CHECK, str(data["nan"])], 1),
        Case("the same, data.cache=false after the check", t("a", f"--dataset={data['nan']}", "--data.cache=false"), 2),
        Case("transcript of NUL bytes", t("a", f"--dataset={data['nul']}"), 2),
        Case(
            "`--modalities face,text` on a voice-only manifest",
            t("a", f"--dataset={data['voices']}", "--modalities=face,text"),
            2,
        ),
        Case("16-bit greyscale PNG face (decode)", grey16(tmp), 0),
    ]
    for value in (
        "--data.image_size=0", "--optim.accumulate=3", "--data.batch_size=1000", "--model.dim=0",
        "--data.voice_seconds=-1", "--data.text_len=0", "--data.sample_rate=0", "--data.tokenizer=/nope",
        "--model.init_from=/nope", "--run.device=cuda", "--data.synthetic.samples_per_identity=2", "--optim.lr=inf",
    ):  # fmt: skip
        found.append(Case(f"`{value}`" + (" (no GPU)" if value == "--run.device=cuda" else ""), t("a", value), 2))
    found += [
        Case(
            "`--model.text=text_hf --model.text_path=/nope`",
            t("a", "--model.text=text_hf", "--model.text_path=/nope"),
            2,
        ),
        Case("late fusion, one val sample per subject", t("a", "--fusion=late", "--modalities=face,voice"), 2),
        resume("pickle"),
        resume("corrupt"),
        resume("deleted"),
        Case("disk full while saving a checkpoint (simulated)", disk_full(t("full")), 2),
        Case("W&B server answering 200 `{}` to everything", [*t("wandb"), "--run.wandb=online"], 0, env=wandb),
    ]
    return found


def damage(case: Case, tmp: Path) -> None:
    """Copy the run stopped after epoch 1 of 2 (made once) to the case's folder and damage its `last` checkpoint:
    a pickle renamed .safetensors, both copies zeros, or deleted (it has no older copy: a record but no checkpoint)."""
    kind, run_dir = case.damage
    source = run_dir.parent / "stopped"
    if not source.exists():
        argv = tiny(run_dir.parent, tmp / "data", "stopped") + ["--optim.epochs=2", "--run.stop_after_epoch=1"]
        subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, timeout=600, check=True)
    shutil.copytree(source, run_dir)
    last = run_dir / "last.safetensors"
    if kind == "deleted":
        last.unlink()
    elif kind == "pickle":
        last.write_bytes(pickle.dumps({"weights": [1.0]}))
    else:  # both copies
        last.write_bytes(b"\x00" * 64)
        last.with_name("last.previous.safetensors").write_bytes(b"\x00" * 64)


def outcome(case: Case, tmp: Path) -> tuple[int, str, bool]:
    """(exit status, the line that says what happened, whether a traceback was printed)."""
    env = os.environ | {"PYTHONPATH": str(ROOT)} | case.env
    done = subprocess.run([sys.executable, *case.argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    said = [line for line in done.stderr.splitlines() if line.startswith(("error:", "warning: W&B"))]
    said = said or [line for line in done.stdout.splitlines() if line.strip()][-1:] or ["(nothing)"]
    if case.argv[:2] == CHECK and done.returncode == 1:
        said = [line.strip() for line in done.stdout.splitlines() if "problem" in line][-1:]
    if done.returncode == 0 and case.argv[0] == RUN:
        skipped = re.findall(r"skipped \d+ of \d+ samples", done.stderr)
        said = ["trained", *skipped, *(s for s in said if "warning" in s)]
    line = " / ".join(said).replace(str(tmp), "$TMP").replace("|", "\\|")
    return done.returncode, line[:300], "Traceback" in done.stderr


class NotWandb(http.server.BaseHTTPRequestHandler):
    """A loopback server that answers every request with 200 and `{}`."""

    def do_GET(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_POST = do_PUT = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--only", default="", help="only the cases whose name has this text (implies --no-write)")
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotWandb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rows, tracebacks, wrong = ["| input | exit | what it said | traceback |", "| --- | --- | --- | --- |"], 0, 0
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        found = [case for case in cases(tmp, server.server_port) if args.only in case.name]
        for case in found:
            if case.damage:
                damage(case, tmp)
            code, line, traced = outcome(case, tmp)
            tracebacks += traced and case.expect == 2
            wrong += code != case.expect
            rows.append(f"| {case.name} | {code} | {line} | {'yes' if traced else 'no'} |")
            print(rows[-1], flush=True)
    server.shutdown()
    summary = (
        f"{len(found)} inputs; {wrong} with another exit status than expected; {tracebacks} tracebacks for user errors"
    )
    print(summary)
    if not (args.no_write or args.only):  # a partial table never replaces the documented one
        table = "\n".join([BEGIN, *rows, "", summary + ".", END])
        text = DOC.read_text()
        text = re.sub(f"{BEGIN}.*{END}", lambda _: table, text, flags=re.S) if BEGIN in text else f"{text}\n{table}\n"
        DOC.write_text(text)
    return 1 if tracebacks or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
