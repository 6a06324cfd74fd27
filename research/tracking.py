"""Run tracking: W&B (offline by default) plus a local JSON run record that tables are built from.

The record (docs/architecture.md) is rewritten after every epoch, so a killed run still leaves its
history; W&B is optional and never needed by tests.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import netrc
import os
import platform
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from research import rundir
from research.checkpoint_files import one_line
from research.config import Config
from research.config_parse import to_dict

REACH_TIMEOUT_S = 5.0  # seconds the W&B server has to answer before a run logs offline
INIT_TIMEOUT_S = 20.0  # wandb.init's own limit once the server answered (wandb's default is 90 s)
PACKAGES = ("numpy", "torch", "torchaudio", "transformers", "jax", "flax", "optax", "wandb", "fusion-research")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS")


def reachable(url: str, timeout: float = REACH_TIMEOUT_S) -> bool:
    """Whether an HTTP server answers at `url` within `timeout` seconds (any status, even an error)."""
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def wandb_mode(requested: str, base_url: str) -> str:
    """`auto` = online when the user is logged in to the server at `base_url` (API key in the environment
    or in ~/.netrc for its host, where `wandb login` writes it), else offline."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        logged_in = netrc.netrc().authenticators(urllib.parse.urlsplit(base_url).hostname or "") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        logged_in = False
    return "online" if logged_in else "offline"


class Tracker:
    """Logs metrics to W&B and to `run_dir/record.json`; `history` survives resume through the record.

    It holds the run directory's lock (research/rundir.py) from creation to `finish`: a second process
    given the same directory stops here with RunDirBusy, before it writes anything.
    """

    def __init__(self, cfg: Config, run_dir: Path, name: str):
        self.lock = rundir.claim(run_dir)
        self.path, self.epochs = run_dir / "record.json", cfg.optim.epochs
        previous = json.loads(self.path.read_text()) if self.path.exists() and cfg.run.resume else {}
        self.record: dict[str, Any] = {
            "name": name,
            "status": "running",
            "error": None,
            "config": to_dict(cfg),
            "history": previous.get("history", []),
            "steps": previous.get("steps", []),
            "summary": {},
            **environment(),
            "started_at": previous.get("started_at", _now()),
            "finished_at": None,
        }
        self.wandb = self._start_wandb(cfg, run_dir, name, resumed=bool(previous))
        self.write()

    @staticmethod
    def _start_wandb(cfg: Config, run_dir: Path, name: str, resumed: bool) -> Any:
        """Online when asked (or logged in) and the server answers, else offline with a warning: a node
        without internet still trains, and `wandb sync` uploads its run directory later."""
        if cfg.run.wandb == "disabled":
            return None
        import wandb

        url = wandb.setup().settings.base_url  # WANDB_BASE_URL, the settings files, or wandb's default server
        mode = wandb_mode(cfg.run.wandb, url)

        # One W&B run per run directory: its id is the run name, so a resumed run continues it.
        kwargs = dict(
            project=cfg.run.project,
            name=name,
            id=name.replace("/", "-"),
            resume="allow" if resumed else None,
            group=cfg.run.group or None,
            tags=list(cfg.run.tags),
            config=logged_config(cfg),
            dir=str(run_dir),
        )
        if mode == "online":
            problem = f"no answer from {url} within {REACH_TIMEOUT_S:.0f} s"
            if reachable(url):
                try:
                    return wandb.init(**kwargs, mode="online", settings=wandb.Settings(init_timeout=INIT_TIMEOUT_S))
                except Exception as err:  # noqa: BLE001 - wandb's errors, or a crashed wandb-core: never the run's
                    _teardown()  # forget the failed online run, so that the offline one can take its id
                    problem = one_line(err)
            print(
                f"warning: W&B online failed ({problem}); logging offline instead: `wandb sync "
                f"{run_dir / 'wandb'}/offline-run-*` uploads the run later",
                file=sys.stderr,
            )
        try:
            return wandb.init(**kwargs, mode="offline")
        except Exception as err:  # noqa: BLE001
            _teardown()
            print(f"warning: W&B offline failed ({one_line(err)}); the run goes on without W&B", file=sys.stderr)
            return None

    def log(self, metrics: dict[str, float], epoch: int) -> None:
        """Append one epoch's metrics to the history (dropping a replayed epoch), log them, print them in a line."""
        history = [h for h in self.record["history"] if h["epoch"] < epoch]
        self.record["history"] = history + [{"epoch": epoch, **metrics}]
        self.write()
        self._wandb(lambda run: run.log({"epoch": epoch, **metrics}))
        print(f"epoch {epoch}/{self.epochs}  " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()), flush=True)

    def log_step(self, metrics: dict[str, float], step: int, epoch: int) -> None:
        """One training step's measurements (research/training.py StepLog): to W&B now, to the record's `steps`
        at its next write (an epoch's end, a mid-epoch checkpoint); the first step logged after a resume drops
        the steps logged from it on before (they are replayed)."""
        steps = [s for s in self.record["steps"] if s["step"] < step]
        self.record["steps"] = steps + [{"step": step, "epoch": epoch, **metrics}]
        self._wandb(lambda run: run.log({"train/step": step, **metrics}))

    def truncate(self, epoch: int) -> None:
        """Forget history after `epoch` (a resume restarts from the checkpoint of that epoch)."""
        self.record["history"] = [h for h in self.record["history"] if h["epoch"] <= epoch]
        self.write()

    def images(self, paths: dict[str, Path]) -> None:
        if self.wandb is not None and paths:
            import wandb

            self._wandb(lambda run: run.log({key: wandb.Image(str(path)) for key, path in paths.items()}))

    def finish(self, status: str, summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        """The record first: whatever W&B does at its finish, the record says how the run ended."""
        self.record.update(status=status, error=error, finished_at=_now())
        self.record["summary"].update(summary or {})
        self.write()
        self._wandb(lambda run: run.summary.update(self.record["summary"]))
        self._wandb(lambda run: run.finish(exit_code=0 if status in ("finished", "interrupted") else 1))
        rundir.release(self.lock)

    def _wandb(self, call) -> None:
        """call(the W&B run); any failure in it (a server that is not W&B, a crashed wandb-core) turns W&B off
        for the rest of the run with one warning line: the run, its record and checkpoints never depend on it."""
        if self.wandb is None:
            return
        try:
            call(self.wandb)
        except Exception as err:  # noqa: BLE001
            self.wandb = None
            _teardown()
            print(
                f"warning: W&B failed ({one_line(err)}); the run goes on without W&B (record.json is complete)",
                file=sys.stderr,
            )

    def write(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.record, indent=1, default=_jsonable))
        tmp.replace(self.path)


def logged_config(cfg: Config) -> dict[str, Any]:
    """The config as W&B shows it: without the sections of the losses the run does not use (the record keeps the
    whole config, from which a run is rebuilt)."""
    config = to_dict(cfg)
    used = {cfg.loss.name} | ({"cross_modal", "softmax"} if cfg.model.task == "match" else set())
    sections = {k for k, v in config["loss"].items() if isinstance(v, dict)}
    config["loss"] = {k: v for k, v in config["loss"].items() if k not in sections - used}
    return config


def is_writer(process: int) -> bool:
    """The one rule of a run of several processes (torchrun's ranks, jax's hosts): only process 0 writes the
    run directory (record, checkpoints) and tracks (W&B)."""
    return process == 0


def process_tracker(process: int, cfg: Config, run_dir: Path, name: str) -> Tracker | Silent:
    """Process 0's Tracker (which locks the run directory), a Silent one on every other process."""
    return Tracker(cfg, run_dir, name) if is_writer(process) else Silent()


class Silent:
    """The tracker of a process other than 0: it takes no run-directory lock and writes nothing."""

    def __init__(self) -> None:
        self.record: dict = {}

    def log(self, metrics: dict, epoch: int) -> None:
        pass

    def log_step(self, metrics: dict, step: int, epoch: int) -> None:
        pass

    def write(self) -> None:
        pass

    def truncate(self, epoch: int) -> None:
        pass

    def images(self, paths: dict) -> None:
        pass

    def finish(self, status: str, summary: dict | None = None, error: str | None = None) -> None:
        pass


def _teardown() -> None:
    """Shut wandb's service down after a failure, quietly: a dead service would otherwise print a traceback from
    wandb's own exit hook (the hook is unregistered first), and a failed service exits through SystemExit."""
    import wandb

    try:
        wandb.teardown(exit_code=1)
    except (Exception, SystemExit):  # noqa: BLE001
        pass


def mark_failed(run_dir: Path, err: BaseException) -> None:
    """Leave this process's record "failed" with the one-line reason when a run stopped on `err` while it still
    said "running" (the trainers mark failures inside their epoch loop themselves; this covers the rest: a
    resume, the end-of-run evaluation). A record whose lock names another process (a live run, or one a kill
    left behind) is not this run's and stays as it is."""
    path, lock = run_dir / "record.json", run_dir / rundir.LOCK
    if not path.is_file() or not lock.is_file() or lock.read_text().strip() != str(os.getpid()):
        return
    record = json.loads(path.read_text())
    if record.get("status") == "running":
        record.update(status="failed", error=one_line(err), finished_at=_now())
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(path)


def environment() -> dict[str, Any]:
    """Git commit, package versions, Python, platform, CPU and the thread settings: what a reader needs to rerun
    the run, and to tell why a rerun on another machine differs (kernels and reduction order follow the CPU's
    instruction set and the thread count)."""
    return {
        "git_commit": _git_commit(),
        "packages": {name: _version(name) for name in PACKAGES if _version(name)},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "thread_env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
    }


def _cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = out.stdout.strip() or "unknown"
    return commit + ("+dirty" if dirty.stdout.strip() else "")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
