"""ftcluster: a throw-away ft cluster on loopback for the integration tests and
the scheduler benchmark.

It starts the real programs (ftsched with a temporary database, one or more
ftworker processes with emulated GPUs or CPU devices), talks to them only
through ftctl, and stops everything on exit. Program paths come from the
environment that meson sets: FTSCHED, FTWORKER, FTCTL.

Python standard library only.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


class SkipTest(Exception):
    """The test cannot run here (exit code 77)."""


class TestFailure(Exception):
    """A check failed; the message says what was expected and what came back."""


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def program(env_name):
    path = os.environ.get(env_name, "")
    if not path:
        raise SkipTest(f"${env_name} is not set (run through meson test)")
    if not os.access(path, os.X_OK):
        raise SkipTest(f"{env_name}={path} is not built yet")
    return path


def check(cond, what, detail=""):
    """Prints the check; raises TestFailure when it does not hold."""
    if cond:
        print(f"ok: {what}", flush=True)
        return
    raise TestFailure(f"{what}{': ' + detail if detail else ''}")


class Cluster:
    """One scheduler and its workers. Use as a context manager."""

    def __init__(self, name="ft-it", insecure=False, keep=False):
        self.ftsched = program("FTSCHED")
        self.ftworker = program("FTWORKER")
        self.ftctl_path = program("FTCTL")
        self.dir = tempfile.mkdtemp(prefix=name + "-")
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.db = os.path.join(self.dir, "ft.db")
        self.sched = None
        self.workers = {}  # name -> Popen
        self.logs = []     # daemon log files, shown on failure
        self.ok = False
        # keep=True: a clean exit leaves the directory for the caller to remove
        # (the benchmark removes all of its runs' at the end; see sched_bench.py).
        self.keep = keep
        # Secure by default: CURVE keys made by `ftsched init`, ftctl acting as
        # the admin, one worker key per node; insecure=True runs --insecure.
        self.insecure = insecure
        self.keys = os.path.join(self.dir, "keys")
        if not insecure:
            r = subprocess.run([self.ftsched, "init", self.keys, "admin", "admins"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise TestFailure(f"ftsched init failed: {r.stderr}")

    def key_env(self, key="admin.key"):
        """Environment for a client or worker using keys/KEY (none if insecure)."""
        if self.insecure:
            return {}
        return {"FT_KEY": os.path.join(self.keys, key),
                "FT_SERVER_KEY": os.path.join(self.keys, "server.pub")}

    def add_key(self, name, user, team, role):
        """Makes keys/NAME.key for (user, team, role) and lists it; returns its env."""
        path = os.path.join(self.keys, name + ".key")
        if not os.path.exists(path):
            r = subprocess.run([self.ftctl_path, "keygen", path, user, team, role],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise TestFailure(f"ftctl keygen failed: {r.stderr}")
            self.list_key(r.stdout)
        return self.key_env(name + ".key")

    def list_key(self, line):
        """Appends a keys-file line (`ftctl keygen`'s output) and, while ftsched
        runs, waits until it has reread the file: it does so within a second,
        and a worker started before that is refused and retries only seconds
        later."""
        reloads = self._sched_log_count("reloaded")
        with open(os.path.join(self.keys, "keys"), "a") as f:
            f.write(line)
        if self.sched and self.sched.poll() is None:
            deadline = time.monotonic() + 5
            while (time.monotonic() < deadline and
                   self._sched_log_count("reloaded") <= reloads):
                time.sleep(0.05)

    def _sched_log_count(self, word):
        """Lines of ftsched's log that contain word (0 before it starts)."""
        try:
            with open(os.path.join(self.dir, "ftsched.log"), "rb") as f:
                return sum(1 for line in f if word.encode() in line)
        except OSError:
            return 0

    # ---- lifecycle ----
    def __enter__(self):
        return self

    def __exit__(self, etype, evalue, tb):
        self.stop_all()
        if etype is not None and not isinstance(evalue, SkipTest):
            self.dump_logs()
        elif not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def _spawn(self, argv, logname, env=None):
        log_path = os.path.join(self.dir, logname)
        self.logs.append(log_path)
        log = open(log_path, "ab")
        e = dict(os.environ)
        for k in ("FT_INSECURE", "FT_KEY", "FT_SERVER_KEY"):
            e.pop(k, None)
        e.update(env or {})
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=self.dir, env=e)
        finally:
            log.close()

    def start_sched(self, extra=()):
        argv = [self.ftsched, "--db", self.db, "--listen", self.endpoint]
        if self.insecure:
            argv += ["--insecure"]
        else:
            argv += ["--keys", os.path.join(self.keys, "keys"),
                     "--server-key", os.path.join(self.keys, "server.key")]
        argv += list(extra)
        self.sched = self._spawn(argv, "ftsched.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.sched.poll() is not None:
                raise TestFailure(f"ftsched exited with {self.sched.returncode} at start")
            r = self.ftctl("--timeout", "0.5", "ping")
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise TestFailure("ftsched did not answer ping within 10 s")

    def start_worker(self, name, gpus=0, cpus=0, extra=()):
        state = os.path.join(self.dir, "state-" + name)
        os.makedirs(state, exist_ok=True)
        # A short grace so that stopping the cluster never waits long on ranks.
        argv = [self.ftworker, "--scheduler", self.endpoint, "--name", name,
                "--state-dir", state, "--stop-grace-ms", "2000"]
        if gpus:
            argv += ["--emulate-gpus", str(gpus)]
        if cpus:
            argv += ["--cpu-devices", str(cpus)]
        argv += list(extra)
        env = {} if self.insecure else self.add_key("node-" + name, name, "nodes", "worker")
        self.workers[name] = self._spawn(argv, f"ftworker-{name}.log", env)
        return self.workers[name]

    def wait_nodes_ready(self, names, timeout=15):
        """Polls `ftctl nodes -o json` until every named node is ready."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for n, p in self.workers.items():
                if n in names and p.poll() is not None:
                    raise TestFailure(f"ftworker {n} exited with {p.returncode} at start")
            r = self.ftctl("-o", "json", "nodes")
            if r.returncode == 0:
                last = json.loads(r.stdout)
                ready = {n["name"] for n in last["nodes"] if n["state"] == "ready"}
                if set(names) <= ready:
                    return last
            time.sleep(0.1)
        raise TestFailure(f"nodes {names} not ready within {timeout} s; last: {last}")

    def kill(self, proc, sig=signal.SIGKILL):
        if proc and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self):
        procs = list(self.workers.values()) + [self.sched]
        for p in procs:
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in procs:
            if not p:
                continue
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def dump_logs(self):
        for path in self.logs:
            try:
                with open(path, "rb") as f:
                    data = f.read()[-6000:].decode("utf-8", "replace")
            except OSError:
                continue
            print(f"---- {path} (last 6000 bytes) ----\n{data}", flush=True)
        print(f"(files kept in {self.dir})", flush=True)

    # ---- ftctl ----
    def ftctl(self, *args, timeout=60, env=None):
        e = dict(os.environ)
        e["FT_SCHEDULER"] = self.endpoint
        e["FT_CONFIG"] = os.devnull  # no user config leaks into tests
        e.pop("FT_TEAM", None)
        for k in ("FT_KEY", "FT_SERVER_KEY"):
            e.pop(k, None)
        e.update(self.key_env())
        if env:
            e.update(env)
        return subprocess.run([self.ftctl_path, *args], capture_output=True, text=True,
                              timeout=timeout, env=e, cwd=self.dir)

    def ftctl_ok(self, *args, **kw):
        r = self.ftctl(*args, **kw)
        if r.returncode != 0:
            raise TestFailure(f"ftctl {' '.join(args)} exited {r.returncode}\n"
                              f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def ftctl_json(self, *args, **kw):
        return json.loads(self.ftctl_ok("-o", "json", *args, **kw).stdout)

    def submit(self, *args, **kw):
        r = self.ftctl_ok("submit", *args, **kw)
        out = r.stdout.strip()
        check(out.isdigit(), f"submit printed a job id ({out})", r.stderr)
        return int(out)

    def job(self, job_id):
        return self.ftctl_json("show", str(job_id))["job"]

    def wait_state(self, job_id, states, timeout=30):
        """Polls until the job is in one of states; returns the job."""
        deadline = time.monotonic() + timeout
        j = None
        while time.monotonic() < deadline:
            j = self.job(job_id)
            if j["state"] in states:
                return j
            time.sleep(0.1)
        raise TestFailure(f"job {job_id} not in {states} within {timeout} s; "
                          f"last: {json.dumps(j)[:2000]}")


def pid_alive(pid):
    """True while any thread of pid has not exited. The process's own entry
    turns zombie as soon as its main thread is done, while its other threads
    (libzmq's, say) may still hold its descriptors, a listening socket among
    them, open for a moment."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    return True
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return False


def run_tests(tests, argv):
    """Runs the named test from the dict tests; exit 0 pass, 1 fail, 77 skip."""
    if len(argv) != 2 or argv[1] not in tests:
        print(f"usage: {argv[0]} TEST  (one of: {', '.join(tests)})", file=sys.stderr)
        return 2
    try:
        tests[argv[1]]()
    except SkipTest as e:
        print(f"skip: {e}", flush=True)
        return 77
    except TestFailure as e:
        print(f"FAIL: {e}", flush=True)
        return 1
    print(f"pass: {argv[1]}", flush=True)
    return 0


def run_main(main):
    """Exits with main()'s status, or 77 on SkipTest and 1 on TestFailure (the
    benchmark drivers' entry point)."""
    try:
        status = main()
    except SkipTest as e:
        print(f"skip: {e}", flush=True)
        status = 77
    except TestFailure as e:
        print(f"FAIL: {e}", flush=True)
        status = 1
    sys.exit(status)
