"""Real processes for the fault tests: a private Redis, a private PostgreSQL, Celery workers
and beats, and a recorder of what the Atlas simulator was asked.

The shared PostgreSQL (5432) and Redis (6379) are never stopped or restarted: every test that
kills or restarts a service starts its own instance on a free port in a temp dir. A fixture
skips (with the reason) when a binary is missing.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CELERY = BIN / "celery"
# Subprocesses read these settings: tests.settings plus a poll interval and a broker restore
# period short enough for a test (tests.settings pins the poll interval to 0).
WORKER_SETTINGS = "tests.reliability.worker_settings"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


# --- Redis ---------------------------------------------------------------------------------


class PrivateRedis:
    """redis-server on its own port, in memory only: a restart loses everything queued."""

    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)

    def start(self) -> None:
        # The log is appended to, so a restart keeps the earlier server's lines.
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--daemonize", "no",
                    "--dir", str(self.workdir),
                ],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(self._pings, 10, 0.05, "redis to answer PING")

    def _pings(self) -> bool:
        import redis

        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: what a crashed or replaced Redis container does to its queues."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def flush(self) -> None:
        self.client().flushall()


@pytest.fixture(scope="session")
def private_redis():
    binary = shutil.which("redis-server")
    if not binary:
        pytest.skip("redis-server is not installed")
    try:
        import redis  # noqa: F401
    except ImportError:
        pytest.skip("the redis client library is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="atlas-redis-"))
    server = PrivateRedis(binary, workdir)
    server.start()
    yield server
    server.kill()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def redis_server(private_redis):
    """The private Redis, empty, running (a previous test may have killed it)."""
    if private_redis.proc is None or private_redis.proc.poll() is not None:
        private_redis.start()
    private_redis.flush()
    return private_redis


# --- PostgreSQL ----------------------------------------------------------------------------


class PrivatePostgres:
    """A throwaway cluster on its own port; restarting it never touches the shared one."""

    def __init__(self, bindir: Path, workdir: Path, as_user: list[str]):
        self.bindir = bindir
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        self.as_user = as_user
        self.log = workdir / "postgres.log"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_user, *args], capture_output=True, text=True, timeout=timeout, check=True
        )

    def initdb(self) -> None:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=60"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.log), "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """mode "immediate" is a crash: connections cut, recovery at the next start."""
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop",
            timeout=60,
        )  # fmt: skip

    def is_running(self) -> bool:
        result = subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            timeout=30,
        )
        return result.returncode == 0

    def url(self, name: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def private_postgres():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = Path(found[-1]) if found else (Path(p) if (p := shutil.which("initdb")) else None)
    if initdb is None or not (initdb.parent / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    workdir = Path(tempfile.mkdtemp(prefix="atlas-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root: the cluster belongs to the postgres OS user.
        runuser = shutil.which("runuser")
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres OS user for initdb")
        if not runuser:
            pytest.skip("running as root and runuser is not available")
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    server = PrivatePostgres(initdb.parent, workdir, as_user)
    try:
        server.initdb()
        server.start()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"could not start a private PostgreSQL: {exc.stderr or exc.stdout}")
    yield server
    with contextlib.suppress(subprocess.SubprocessError):
        server.stop("immediate")
    shutil.rmtree(workdir, ignore_errors=True)


# --- Celery processes ----------------------------------------------------------------------


def worker_env(**overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ATLAS_", "CELERY_", "DATABASE_", "CACHE_", "PYTEST_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE=WORKER_SETTINGS,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
        ATLAS_POLL_INTERVAL_SECONDS="1",
        ATLAS_SWEEP_INTERVAL_SECONDS="1",
        CELERY_VISIBILITY_TIMEOUT="5",
    )
    env.update(overrides)
    return env


class CeleryProcess:
    """A `celery -A atlas_review worker|beat` in its own process group (so a kill reaches its
    pool children too), logging to a file."""

    def __init__(self, kind: str, args: list[str], env: dict[str, str], log: Path):
        self.kind, self.args, self.env, self.log = kind, args, env, log
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, wait: bool = True) -> CeleryProcess:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start #{self.starts} =====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [str(CELERY), "-A", "atlas_review", self.kind, *self.args],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        if wait and self.kind == "worker":
            marker = f"===== start #{self.starts} ====="
            wait_for(
                lambda: self._ready(marker), 60, 0.1, f"the worker to be ready:\n{tail(self.log)}"
            )
        return self

    def _ready(self, marker: str) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise AssertionError(f"celery {self.kind} exited:\n{tail(self.log)}")
        text = self.log.read_text(errors="replace")
        return " ready." in text.rsplit(marker, 1)[-1]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def children(self) -> list[int]:
        if not self.alive:
            return []
        found = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:  # field 4 of stat: the parent pid
                found.append(int(Path(stat).parent.name))
        return found

    def kill(self) -> None:
        """SIGKILL the whole group: main process and pool children, no chance to clean up."""
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill_child(self) -> bool:
        """SIGKILL one pool process (what the OOM killer does); the main process survives."""
        kids = self.children()
        if not kids:
            return False
        with contextlib.suppress(ProcessLookupError):  # it may have just exited
            os.kill(kids[0], signal.SIGKILL)
        return True

    def stop(self) -> None:
        """A warm shutdown, then SIGKILL for whatever is left of the group."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def celery_processes(tmp_path, request):
    """Start Celery workers and beats; every one is stopped after the test, and the logs of a
    failed test are printed."""
    started: list[CeleryProcess] = []

    def start(kind: str, env: dict[str, str], *args: str, name: str = "", wait=True):
        n = len(started) + 1
        name = name or f"{kind}{n}"
        if kind == "worker":
            args = (
                "-l", "info", "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
                "--without-heartbeat", *args,
            )  # fmt: skip
        else:
            args = ("-l", "info", "-s", str(tmp_path / f"{name}-schedule"), *args)
        process = CeleryProcess(kind, list(args), env, tmp_path / f"{name}.log")
        started.append(process)
        return process.start(wait=wait)

    if not CELERY.exists():
        pytest.skip(f"celery is not installed at {CELERY}")
    yield start
    for process in started:
        process.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for process in started:
            print(f"--- {process.log.name} ---\n{tail(process.log, 60)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep


# --- what Atlas was asked ------------------------------------------------------------------


REQUEST_LINE = "%s %s -> %d (%.0f ms)"  # the simulator's log line for each request


@dataclass(frozen=True)
class SimCall:
    at: float
    method: str
    path: str
    query: dict
    status: int


class SimRecorder(logging.Handler):
    """Every request the simulator answered (its one log line per request), with the time it
    was answered: per-flow poll counts, gaps between calls, 429s and what followed them."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.calls: list[SimCall] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg != REQUEST_LINE:
            return
        method, raw, status, _ms = record.args
        parts = urlsplit(raw)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.calls.append(SimCall(time.monotonic(), method, parts.path, query, status))

    def of(self, endpoint: str, status: int | None = None) -> list[SimCall]:
        with self._lock:
            calls = list(self.calls)
        return [
            c for c in calls if c.path.endswith(endpoint) and (status is None or c.status == status)
        ]

    def per_flow(self, endpoint: str = "/status") -> Counter:
        return Counter(c.query.get("flow_uuid") for c in self.of(endpoint))

    def statuses(self) -> Counter:
        with self._lock:
            return Counter(c.status for c in self.calls)


@pytest.fixture
def sim_calls():
    logger = logging.getLogger("atlas_review.atlas.simulator")
    recorder = SimRecorder()
    old = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False  # a line per request would drown the test output
    logger.addHandler(recorder)
    yield recorder
    logger.removeHandler(recorder)
    logger.level, logger.propagate = old


def worker_database_url() -> str:
    """The database pytest-django created for this run, for processes the test starts."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    port = db.get("PORT") or 5432
    return f"postgres://{db['USER']}@{db.get('HOST') or '127.0.0.1'}:{port}/{db['NAME']}"


@pytest.fixture
def celery_broker(redis_server):
    """Point this process's Celery app at the private Redis (tests otherwise run tasks
    inline): what create_flow and the callback view queue is sent to the broker."""
    from atlas_review.celery import app

    names = ("broker_url", "task_always_eager", "broker_transport_options")
    saved = {name: app.conf[name] for name in names}

    def reset_connections():
        from kombu import pools

        pools.reset()  # the connection and producer pools are global, keyed by URL
        app._pool = None
        app.amqp._producer_pool = None

    reset_connections()
    app.conf.update(
        broker_url=redis_server.url(0),
        task_always_eager=False,
        # Publishing while Redis is down fails after a short retry instead of hanging.
        broker_transport_options={"socket_timeout": 2, "socket_connect_timeout": 2},
    )
    yield redis_server
    reset_connections()
    app.conf.update(saved)
