"""Every script of benchmarks/ runs at a tiny size: a smoke test (exit 0 and a line of its table printed), not a
measurement. A script added to benchmarks/ without a case here fails the first test.

Scripts run in this process (runpy, as `python script ...` would, with sys.argv set), so torch and jax are
imported once for all of them; a script that sets process-wide state at start-up runs in a fresh process
instead (FRESH). Sizes are each script's smallest honest setting: one step, a batch of 4, one fusion, one
seed, 8 identities of 6 samples at 16 px and 0.5 s, the throughput scripts' `--model tiny`.
"""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A tiny embedded dataset in the test's own folder ({tmp} is the test's tmp_path).
DATA = [
    "--data.root={tmp}/data",
    "--data.synthetic.identities=8",
    "--data.synthetic.samples_per_identity=6",
    "--data.image_size=16",
    "--data.voice_seconds=0.5",
]
RUN = [*DATA, "--data.batch_size=8", "--model.dim=16", "--model.layers=1", "--model.fusion_layers=1"]
RUN += ["--optim.epochs=1", "--eval.plots=false", "--eval.trials=100"]

# script -> (its arguments, a text its output must contain)
CASES = {
    "benchmarks/bad_inputs.py": (
        ["--only", "Latin-1, not UTF-8"],
        "1 inputs; 0 with another exit status than expected; 0 tracebacks",
    ),
    "benchmarks/gpu.py": (["--steps", "1", "--batch", "4"], "GPU"),  # CI: "no GPU here", in one line
    "benchmarks/prepare.py": (["--scale", "1", "--formats", "wav", "--workers", "1"], "prepare files/s"),
    "benchmarks/jax/components.py": (["--steps", "1", "--batch", "4", "--only", "fusion", "--no-torch"], "first call"),
    "benchmarks/jax/same_init.py": (
        ["--seeds", "0", "--out", "{tmp}/runs", "--modalities=face", *RUN],
        "jax   test/acc mean",
    ),
    "benchmarks/jax/throughput.py": (
        ["--model", "tiny", "--fusions", "late", "--steps", "1", "--batch", "4"],
        "jax/torch",
    ),
    "benchmarks/torch/arcface_stall.py": (
        ["--identities", "100", "--seeds", "0", "--steps", "10", "--toy-steps", "10", "--starts", "140"],
        "toy: 1000 free embeddings",
    ),
    "benchmarks/torch/components.py": (["--steps", "1", "--batch", "4"], "whole model"),
    "benchmarks/torch/fusion_properties.py": (
        ["--models", "face", "--seeds", "0", "--orders", "0", "--threads", "0", "--data-root", "{tmp}/data"]
        + ["--set=--data.synthetic.identities=16", "--set=--optim.epochs=1", "--set=--eval.trials=100"],
        "face       holds",
    ),
    "benchmarks/torch/initial_state.py": (["{tmp}/initial.npz", "--modalities=face", *RUN], "tensors"),
    "benchmarks/torch/margin_heads.py": (
        ["--classes", "64", "--heads", "softmax", "--yardsticks", "", "--dim", "16", "--batch", "8"]
        + ["--repeats", "1", "--million", "64", "--million-batch", "4", "--measure", "softmax", "--threads", "0"],
        "MB ratio",
    ),
    "benchmarks/torch/pipeline.py": (
        ["--steps", "1", "--batch", "4", "--workers", "0", "--per-identity", "3"],  # 0: no worker processes
        "decoding (no model)",
    ),
    "benchmarks/torch/throughput.py": (
        ["--model", "tiny", "--fusions", "late", "--steps", "1", "--batch", "4"],
        "late",
    ),
    "benchmarks/torch/verification_by_loss.py": (
        ["--losses", "softmax,arcface", "--identities", "8", "--samples", "64", "--seeds", "0", "--steps", "2"],
        "test EER minus softmax's",
    ),
}
# Scripts whose smoke test lives elsewhere.
COVERED = {"benchmarks/torch/statistical_margins.py": "tests/benchmarks/test_statistical_margins.py"}
# Scripts run in a fresh process: they set process-wide state (thread counts) that would outlive the test.
FRESH = {
    "benchmarks/torch/arcface_stall.py",  # torch.set_num_threads(1)
    "benchmarks/torch/verification_by_loss.py",  # torch.set_num_threads(1)
}


def scripts() -> set[str]:
    """The programs of benchmarks/: its Python files with a `__main__` block."""
    found = (ROOT / "benchmarks").rglob("*.py")
    return {str(p.relative_to(ROOT)) for p in found if 'if __name__ == "__main__":' in p.read_text()}


def test_every_script_has_a_smoke_case():
    missing = scripts() - set(CASES) - set(COVERED)
    assert not missing, f"add a tiny case to CASES for {sorted(missing)}"
    assert not (set(CASES) | set(COVERED)) - scripts(), "a case names a script that is gone"


@pytest.mark.parametrize("script", sorted(CASES))
def test_script_runs_at_a_tiny_size(script, tmp_path, monkeypatch, capfd):
    args, expected = CASES[script]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    monkeypatch.chdir(ROOT)
    if script in FRESH:
        done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        out = done.stdout
    else:
        torch = sys.modules.get("torch")  # imported by the suite's other tests; this file imports no framework
        threads = torch.get_num_threads() if torch else None
        monkeypatch.setattr(sys, "argv", [script, *args])
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as stop:
            assert stop.code in (0, None), f"{script} exited with {stop.code}"
        out = capfd.readouterr().out
        # A thread count left changed would change the float sums of every later test that compares an in-process
        # run with a subprocess run (the resume tests): such a script belongs in FRESH.
        assert threads is None or torch.get_num_threads() == threads, f"{script} changed torch's thread count"
    assert expected in out, out[-3000:]
