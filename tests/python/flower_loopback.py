"""A real loopback Flower deployment for the tests (recipe: shared/spec/flower.md §1.3).

One ``flower-superlink`` and N ``flower-supernode`` processes on 127.0.0.1 (free ports
picked at start), ``FLWR_HOME`` in a temporary directory, telemetry, update checks and
runtime dependency installation off, and ``flwr run --stream`` with a timeout. Every process
is stopped by PID: the descendant tree (SuperExec children start new sessions) is collected
before SIGTERM, and whatever is left after a grace period gets SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

BIN = Path(sys.executable).parent


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def descendants(pid: int) -> list[int]:
    """``pid``'s whole descendant tree."""
    tree, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            tree.append(child)
            todo.append(child)
    return tree


def alive(pid: int) -> bool:
    """True while ``pid`` runs (zombies count as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2] != "Z"


class Loopback:
    """The deployment: :meth:`start`, then :meth:`run` apps, then :meth:`stop`."""

    def __init__(self, workdir: Path, node_configs: Sequence[str]) -> None:
        self.workdir = workdir
        self.home = workdir / "flwr-home"
        self.node_configs = list(node_configs)
        ports = free_ports(1 + len(node_configs))
        self.port, self.node_ports = ports[0], ports[1:]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.tree: list[int] = []  # every PID stop() found and stopped
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "FLWR_HOME": str(self.home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2",
            "PYTHONWARNINGS": "ignore",
        }

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.workdir,
            )
        self.procs.append(proc)

    def start(self, timeout: float = 90.0) -> None:
        """SuperLink (waits for ``/health``), then the SuperNodes."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            '[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        self._spawn(
            "superlink",
            [
                str(BIN / "flower-superlink"),
                "--insecure",
                "--isolation",
                "subprocess",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--disable-runtime-dependency-installation",
            ],
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise RuntimeError(f"SuperLink not healthy:\n{self.tail('superlink')}")
            time.sleep(0.3)
        for i, (port, config) in enumerate(zip(self.node_ports, self.node_configs, strict=True)):
            self._spawn(
                f"supernode{i}",
                [
                    str(BIN / "flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{self.port}",
                    "--port",
                    str(port),
                    "--node-config",
                    config,
                ],
            )

    def run(
        self, app: Path, run_config: Mapping[str, object], name: str, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """``flwr run APP loopback --stream --run-config ...`` (bounded by ``timeout``)."""

        def toml(v: object) -> str:
            if isinstance(v, bool):
                return "true" if v else "false"
            return f'"{v}"' if isinstance(v, str) else repr(v)

        overrides = " ".join(f"{k}={toml(v)}" for k, v in run_config.items())
        args = [
            str(BIN / "flwr"),
            "run",
            str(app),
            "loopback",
            "--stream",
            "--run-config",
            overrides,
        ]
        try:
            done = subprocess.run(
                args,
                capture_output=True,
                text=True,
                env=self.env,
                cwd=self.workdir,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(
                f"flwr run {name} timed out after {timeout} s:\n{err.stdout}\n{self.tails()}"
            ) from err
        (self.workdir / f"run-{name}.log").write_text(done.stdout + done.stderr)
        return done

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def tails(self) -> str:
        return "\n".join(f"--- {p.stem}\n{self.tail(p.stem, 25)}" for p in self.logs)

    def stop(self, grace: float = 15.0) -> list[int]:
        """Stop every process this deployment started, by PID; returns the PIDs that needed
        SIGKILL."""
        tree: list[int] = []
        for proc in self.procs:
            tree += [proc.pid, *descendants(proc.pid)]
        for proc in self.procs[1:]:  # SuperNodes first, then the SuperLink
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        if self.procs and self.procs[0].poll() is None:
            self.procs[0].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(p) for p in tree):
            for proc in self.procs:
                proc.poll()  # reap our own children
            time.sleep(0.2)
        for pid in list(tree):  # late children of processes that are still up
            if alive(pid):
                tree += [d for d in descendants(pid) if d not in tree]
        self.tree = tree
        killed = [p for p in tree if alive(p)]
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        return killed
