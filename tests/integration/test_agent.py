#!/usr/bin/env python3
"""The ftctl agent (client/agent.c) against the real ftsched and ftworker: the
agent path gives the same outcomes as the direct one, survives a scheduler
restart, a killed agent leaves ftctl working, the socket and its directory are
private, other uids and bad frames are refused, --persist and stop end it.

Run one test: test_agent.py NAME (meson registers each NAME separately).
Exit 0 pass, 1 fail, 77 skip.
"""
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ftcluster import Cluster, SkipTest, TestFailure, check, pid_alive, run_tests  # noqa: E402

NOBODY = 65534


class AgentCluster(Cluster):
    """A cluster whose ftctl calls find agents under its own XDG_RUNTIME_DIR."""

    def __init__(self, name):
        super().__init__(name)
        self.xdg = os.path.join(self.dir, "xdg")
        os.mkdir(self.xdg, 0o700)
        self.agent_pids = []

    def ftctl(self, *args, env=None, **kw):
        e = {"XDG_RUNTIME_DIR": self.xdg, "FT_AGENT": "auto", "FT_AGENT_SOCKET": ""}
        e.update(env or {})
        return super().ftctl(*args, env=e, **kw)

    def start_agent(self, *extra, env=None):
        r = self.ftctl_ok("agent", "start", "--log", os.path.join(self.dir, "agent.log"),
                          *extra, env=env)
        path = r.stdout.strip().splitlines()[-1]
        st = self.agent_status(env=env)
        self.agent_pids.append(st["pid"])
        if os.path.join(self.dir, "agent.log") not in self.logs:
            self.logs.append(os.path.join(self.dir, "agent.log"))
        return path, st

    def agent_status(self, env=None):
        return self.ftctl_json("agent", "status", env=env)

    def stop_all(self):
        for pid in self.agent_pids:
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        super().stop_all()


def traced(c, *args, env=None, ok=True):
    """Runs ftctl with FTCTL_TRACE=1; returns (result, phases)."""
    r = c.ftctl(*args, env=dict(env or {}, FTCTL_TRACE="1"))
    if ok and r.returncode != 0:
        raise TestFailure(f"ftctl {' '.join(args)} exited {r.returncode}: {r.stderr}")
    phases = re.findall(r"^ftctl: trace: (\S+)", r.stderr, re.M)
    return r, phases


def check_agent_path(phases, what):
    check("agent-reply" in phases and "zmq-context" not in phases,
          f"{what} went through the agent, without a ZeroMQ context", str(phases))


def check_direct_path(phases, what):
    check("agent-reply" not in phases and "zmq-context" in phases,
          f"{what} went direct", str(phases))


def wait_gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.02)
    return not pid_alive(pid)


def frame(body):
    return struct.pack(">I", len(body)) + body


def read_frame(s, timeout=5):
    """One frame from socket s as parsed JSON; None at end of stream."""
    s.settimeout(timeout)
    hdr = b""
    while len(hdr) < 4:
        b = s.recv(4 - len(hdr))
        if not b:
            return None
        hdr += b
    n = struct.unpack(">I", hdr)[0]
    body = b""
    while len(body) < n:
        b = s.recv(n - len(body))
        if not b:
            raise TestFailure("the agent closed the connection inside a frame")
        body += b
    return json.loads(body)


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def ping_req(i):
    return json.dumps({"v": 1, "type": "ping", "id": f"t-{i}"}).encode()


def same_outcome():
    """submit, ls, show, wait, cancel through the agent match the direct path."""
    with AgentCluster("agent-outcome") as c:
        c.start_sched()
        c.start_worker("n1", gpus=2)
        c.wait_nodes_ready(["n1"])
        path, st = c.start_agent()
        d = os.path.dirname(path)
        check(re.fullmatch(re.escape(c.xdg) + r"/ft/agent-[0-9a-f]{16}\.sock", path) is not None,
              "the socket is $XDG_RUNTIME_DIR/ft/agent-<16 hex>.sock", path)
        check(stat.S_IMODE(os.stat(d).st_mode) == 0o700, "its directory has mode 0700",
              oct(os.stat(d).st_mode))
        check(stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_ISSOCK(os.stat(path).st_mode),
              "the socket has mode 0600", oct(os.stat(path).st_mode))
        check(st["endpoint"] == c.endpoint and st["relayed"] == 0 and st["socket"] == path,
              "agent status: endpoint, socket, nothing relayed yet", str(st))
        txt = c.ftctl_ok("agent", "status").stdout
        check(f"pid:        {st['pid']}" in txt and "relayed:" in txt and "uptime:" in txt,
              "agent status prints pid, relayed and uptime for people", txt)

        r, ph = traced(c, "submit", "--name", "via-agent", "--", "sh", "-c", "echo agent; exit 3")
        check_agent_path(ph, "submit")
        ja = int(r.stdout.strip())
        r, ph = traced(c, "submit", "--name", "direct", "--", "sh", "-c", "echo agent; exit 3",
                       env={"FT_AGENT": "off"})
        check_direct_path(ph, "submit with FT_AGENT=off")
        jd = int(r.stdout.strip())
        r, ph = traced(c, "--agent", "off", "ping")
        check_direct_path(ph, "ping with --agent off")

        ra, ph = traced(c, "wait", str(ja), ok=False)
        check_agent_path(ph, "wait")
        rd = c.ftctl("wait", str(jd), env={"FT_AGENT": "off"})
        check(ra.returncode == rd.returncode == 4 and "FAILED" in ra.stderr
              and "FAILED" in rd.stderr,
              "wait on a failing job: exit 4 and FAILED on both paths",
              f"{ra.returncode} {ra.stderr} / {rd.returncode} {rd.stderr}")
        sa, ph = traced(c, "-o", "json", "show", str(ja))
        check_agent_path(ph, "show")
        a = json.loads(sa.stdout)["job"]
        d_ = json.loads(c.ftctl_ok("-o", "json", "show", str(jd),
                                   env={"FT_AGENT": "off"}).stdout)["job"]
        keys = ("state", "exit_code", "kind", "user", "team", "attempt")
        check(all(a[k] == d_[k] for k in keys),
              "show: state, exit code, user, team, attempt agree",
              str({k: (a[k], d_[k]) for k in keys}))
        la, ph = traced(c, "-o", "json", "ls", "--all")
        check_agent_path(ph, "ls")
        ld = json.loads(c.ftctl_ok("-o", "json", "ls", "--all", env={"FT_AGENT": "off"}).stdout)
        check(json.loads(la.stdout) == ld, "ls --all -o json is the same on both paths")
        r, ph = traced(c, "logs", str(ja))
        check_agent_path(ph, "logs")
        check(r.stdout.split() == ["agent"], "logs through the agent", repr(r.stdout))

        # cancel a running job through the agent; wait sees it CANCELLED
        jl = c.submit("--", "sleep", "30")
        c.wait_state(jl, ["RUNNING"])
        r, ph = traced(c, "cancel", str(jl))
        check_agent_path(ph, "cancel")
        j = c.wait_state(jl, ["CANCELLED"])
        check(j["state"] == "CANCELLED", "the cancelled job ends CANCELLED")
        r = c.ftctl("wait", str(jl))
        check(r.returncode == 4 and "CANCELLED" in r.stderr, "wait on it exits 4", r.stderr)

        # an error reply comes back as it does directly
        ra = c.ftctl("show", "99999")
        rd = c.ftctl("show", "99999", env={"FT_AGENT": "off"})
        check(ra.returncode == rd.returncode == 1 and ra.stderr == rd.stderr,
              "an error reply (not_found) reads the same on both paths",
              f"{ra.returncode} {ra.stderr!r} / {rd.returncode} {rd.stderr!r}")
        st2 = c.agent_status()
        check(st2["relayed"] >= 10 and st2["replies"] == st2["relayed"] and st2["in_flight"] == 0,
              "agent status counts the relayed requests and routed replies", str(st2))
        # -h, usage errors
        check(c.ftctl("agent", "-h").returncode == 0, "agent -h exits 0")
        r = c.ftctl("agent", "frob")
        check(r.returncode == 2 and "unknown action 'frob'" in r.stderr,
              "agent frob: usage error 2", r.stderr)
        r = c.ftctl("agent", "start", "--persist", "-1")
        check(r.returncode == 2 and "--persist" in r.stderr, "a negative --persist is refused",
              r.stderr)
        r = c.ftctl("ping", env={"FT_AGENT": "sometimes"})
        check(r.returncode == 2 and "$FT_AGENT" in r.stderr, "a bad FT_AGENT is a usage error",
              r.stderr)
        r = c.ftctl_ok("agent", "stop")
        check("agent stopped" in r.stdout and not os.path.exists(path) and wait_gone(st["pid"]),
              "agent stop ends it and removes its socket", r.stdout + r.stderr)
        r, ph = traced(c, "ping")
        check_direct_path(ph, "ping after agent stop")


def sched_restart():
    """The agent keeps working across an ftsched SIGKILL and restart; while
    ftsched is down the usual unreachable error comes within the time-out."""
    with AgentCluster("agent-restart") as c:
        c.start_sched()
        c.start_worker("n1", gpus=1)
        c.wait_nodes_ready(["n1"])
        path, st = c.start_agent()
        j1 = c.submit("--", "true")
        c.kill(c.sched)
        t0 = time.monotonic()
        r, ph = traced(c, "--timeout", "0.5", "ping", ok=False)
        dt = time.monotonic() - t0
        check(r.returncode == 3 and "unreachable" in r.stderr and dt < 4,
              f"with ftsched down: exit 3, 'unreachable', in {dt:.1f} s",
              f"{r.returncode} {r.stderr}")
        check("agent-sent" in ph and "zmq-context" not in ph,
              "the attempts went through the agent", str(ph))
        c.start_sched()
        r, ph = traced(c, "submit", "--", "true")
        check_agent_path(ph, "the first submit after the restart")
        j2 = int(r.stdout.strip())
        r = c.ftctl("wait", str(j1), str(j2), timeout=60)
        check(r.returncode == 0, "both jobs COMPLETED", r.stdout + r.stderr)
        st2 = c.agent_status()
        check(st2["pid"] == st["pid"], "the same agent process served throughout", str(st2))


def stale_socket():
    """A SIGKILLed agent leaves its socket; ftctl falls back; start replaces it;
    the persist setting starts one."""
    with AgentCluster("agent-stale") as c:
        c.start_sched()
        c.start_worker("n1", gpus=1)
        c.wait_nodes_ready(["n1"])
        # An agent killed while `wait` polls through it: wait goes on directly.
        path, st = c.start_agent()
        j = c.submit("--", "sleep", "1.5")
        e = dict(os.environ, FT_SCHEDULER=c.endpoint, FT_CONFIG=os.devnull, FT_AGENT="auto",
                 XDG_RUNTIME_DIR=c.xdg, FTCTL_TRACE="1", **c.key_env())
        e.pop("FT_AGENT_SOCKET", None)
        w = subprocess.Popen([c.ftctl_path, "wait", str(j)], env=e, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        os.kill(st["pid"], signal.SIGKILL)
        out, err = w.communicate(timeout=30)
        ph = re.findall(r"^ftctl: trace: (\S+)", err, re.M)
        check(w.returncode == 0 and f"job {j} COMPLETED" in out,
              "wait completes although its agent was killed mid-way", f"{w.returncode} {err}")
        check(ph.index("agent-reply") < ph.index("agent-gone") < ph.index("zmq-context"),
              "it polled through the agent, saw it gone, then went direct", str(ph))
        os.unlink(path)
        path, st = c.start_agent()
        os.kill(st["pid"], signal.SIGKILL)
        check(wait_gone(st["pid"]) and os.path.exists(path),
              "a SIGKILLed agent leaves its socket behind")
        r, ph = traced(c, "ping")
        check_direct_path(ph, "ping with a stale socket")
        check("warning" not in r.stderr, "no warning for a stale socket", r.stderr)
        path2, st2 = c.start_agent()
        check(path2 == path and st2["pid"] != st["pid"], "agent start replaces the stale socket",
              f"{st} {st2}")
        r = c.ftctl_ok("agent", "start")
        check("already listens" in r.stderr and r.stdout.strip() == path,
              "a second agent start says one already listens", r.stderr)
        # An agent killed while a client holds it: the next call goes direct.
        os.kill(st2["pid"], signal.SIGKILL)
        check(wait_gone(st2["pid"]), "the SIGKILLed agent is gone")
        r = c.ftctl("agent", "stop")
        check(r.returncode == 0 and "stale" in r.stderr and not os.path.exists(path),
              "agent stop removes a stale socket", r.stderr)
        # persist: none runs, so the first call starts one and uses it
        r, ph = traced(c, "ping", env={"FT_AGENT": "persist"})
        check("agent-spawn" in ph and "agent-reply" in ph and "zmq-context" not in ph,
              "FT_AGENT=persist starts an agent and goes through it", str(ph))
        st3 = c.agent_status()
        c.agent_pids.append(st3["pid"])
        check(st3["persist_s"] == 600 and st3["relayed"] == 1,
              "the started agent persists 600 s and relayed the ping", str(st3))
        r, ph = traced(c, "ping", env={"FT_AGENT": "persist"})
        check("agent-spawn" not in ph and "agent-reply" in ph, "the next call reuses it", str(ph))


def private():
    """Other uids: refused by the file modes and by SO_PEERCRED; a directory
    with the wrong owner or mode is not used."""
    if os.geteuid() != 0:
        raise SkipTest("needs root to act as another uid")
    with AgentCluster("agent-private") as c:
        c.start_sched()
        path, st = c.start_agent()
        d = os.path.dirname(path)

        def as_nobody(fn):
            """Runs fn() in a child as uid/gid 65534; returns its exit status."""
            pid = os.fork()
            if pid == 0:
                try:
                    os.setgroups([])
                    os.setgid(NOBODY)
                    os.setuid(NOBODY)
                    os._exit(fn())
                except BaseException:
                    os._exit(99)
            return os.waitpid(pid, 0)[1] >> 8

        def try_connect(p):
            def fn():
                try:
                    s = connect(p)
                except PermissionError:
                    return 10
                try:
                    s.sendall(frame(ping_req(1)))
                    return 11 if read_frame(s) is None else 12
                except (ConnectionResetError, BrokenPipeError):
                    return 11
            return fn

        check(as_nobody(try_connect(path)) == 10, "uid 65534 cannot even reach the socket (EACCES)")
        # Behind the file modes, the agent checks the peer itself: a hard link
        # in an open directory, with the socket opened up, still gets nothing.
        pub = tempfile.mkdtemp(prefix="ft-agent-pub-", dir=os.path.dirname(c.dir))
        try:
            os.chmod(pub, 0o755)
            link = os.path.join(pub, "a.sock")
            os.link(path, link)
            os.chmod(path, 0o666)
            rc = as_nobody(try_connect(link))
            os.chmod(path, 0o600)
        finally:
            shutil.rmtree(pub, ignore_errors=True)
        check(rc == 11, "the agent closes a connection from uid 65534 (SO_PEERCRED)", f"rc={rc}")
        st2 = c.agent_status()
        check(st2["refused_peers"] == 1, "agent status counts one refused peer", str(st2))

        # ftctl refuses an agent directory with group/other bits or another owner
        bad = os.path.join(c.dir, "open")
        os.mkdir(bad)
        os.chmod(bad, 0o755)
        r, ph = traced(c, "ping", env={"FT_AGENT_SOCKET": os.path.join(bad, "a.sock")})
        check("warning: not using the agent" in r.stderr and "mode 0755" in r.stderr,
              "a 0755 directory: ftctl warns", r.stderr)
        check_direct_path(ph, "ping with a 0755 agent directory")
        check(r.stderr.count("warning") == 1, "the warning comes once", r.stderr)
        r = c.ftctl("agent", "start", env={"FT_AGENT_SOCKET": os.path.join(bad, "a.sock")})
        check(r.returncode == 1 and "mode 0755" in r.stderr, "agent start refuses it too", r.stderr)
        theirs = os.path.join(c.dir, "theirs")
        os.mkdir(theirs, 0o700)
        os.chown(theirs, NOBODY, NOBODY)
        r, ph = traced(c, "ping", env={"FT_AGENT_SOCKET": os.path.join(theirs, "a.sock")})
        check("belongs to uid 65534" in r.stderr, "a directory of uid 65534: ftctl warns", r.stderr)
        check_direct_path(ph, "ping with another uid's agent directory")

        # ftctl checks the peer too: a listener that set itself up as uid 65534
        mine = os.path.join(c.dir, "mine")
        os.mkdir(mine, 0o700)
        fake = os.path.join(mine, "a.sock")
        rd, wr = os.pipe()
        pid = os.fork()
        if pid == 0:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(fake)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            s.listen(4)  # SO_PEERCRED records the listener's credentials here
            os.write(wr, b"x")
            time.sleep(20)
            os._exit(0)
        os.read(rd, 1)
        try:
            r, ph = traced(c, "ping", env={"FT_AGENT_SOCKET": fake})
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        check("runs as uid 65534" in r.stderr, "an agent socket served by uid 65534: ftctl warns",
              r.stderr)
        check_direct_path(ph, "ping with a foreign listener")


def bad_frames():
    """Garbage, oversize and malformed frames close only that client; one id
    in flight from two clients is refused."""
    with AgentCluster("agent-frames") as c:
        c.start_sched()
        path, st = c.start_agent()
        good = connect(path)
        good.sendall(frame(ping_req(0)))
        rep = read_frame(good)
        check(rep and rep["type"] == "ping_reply" and rep["re"] == "t-0",
              "a raw client gets its ping_reply routed by 're'", str(rep))
        cases = [
            ("a zero length", struct.pack(">I", 0), "bad_field"),
            ("an oversize length", struct.pack(">I", 1024 * 1024 + 1), "too_large"),
            ("bad JSON", frame(b"{not json"), "bad_json"),
            ("a JSON array", frame(b"[1,2]"), "bad_json"),
            ("no id", frame(b'{"v":1,"type":"ping"}'), "missing_field"),
            ("no type", frame(b'{"v":1,"id":"x"}'), "missing_field"),
        ]
        for what, data, code in cases:
            s = connect(path)
            s.sendall(data)
            rep = read_frame(s)
            end = read_frame(s)
            s.close()
            check(rep is not None and rep["type"] == "error" and rep["code"] == code
                  and rep.get("agent") == "request" and end is None,
                  f"{what}: an error frame ({code}), then the agent closes", f"{rep} {end}")
        s = connect(path)
        s.sendall(frame(b'{"v":1,"type":"hello","id":"w1"}'))
        rep = read_frame(s)
        check(rep["type"] == "error" and rep["code"] == "unknown_type" and rep["re"] == "w1",
              "a worker message is not relayed (unknown_type)", str(rep))
        s.sendall(frame(ping_req(7)))
        rep = read_frame(s)
        check(rep["type"] == "ping_reply", "that client is still served", str(rep))
        s.close()
        # A client that vanishes inside a frame does not disturb the others.
        s = connect(path)
        s.sendall(struct.pack(">I", 100) + b"{")
        s.close()
        good.sendall(frame(ping_req(1)))
        rep = read_frame(good)
        check(rep and rep["re"] == "t-1", "the first client was served throughout", str(rep))
        # the same id in flight from two clients: freeze ftsched so it stays in flight
        os.kill(c.sched.pid, signal.SIGSTOP)
        try:
            other = connect(path)
            good.sendall(frame(ping_req(2)))
            time.sleep(0.2)
            other.sendall(frame(ping_req(2)))
            rep = read_frame(other)
            check(rep["type"] == "error" and rep["code"] == "bad_state"
                  and "in flight" in rep["message"],
                  "the same id from a second client while in flight: bad_state", str(rep))
        finally:
            os.kill(c.sched.pid, signal.SIGCONT)
        rep = read_frame(good)
        check(rep and rep["re"] == "t-2", "the first one's reply arrives once ftsched resumes",
              str(rep))
        other.close()
        good.close()
        st2 = c.agent_status()
        check(st2["bad_frames"] == len(cases) and st2["in_flight"] == 0,
              f"agent status counts {len(cases)} bad frames, nothing left in flight", str(st2))
        r = c.ftctl_ok("ping")
        check("ftsched" in r.stdout or r.stdout.strip() != "", "ftctl still works through it",
              r.stdout)


def persist_exit():
    """--persist 1: the agent exits after a second without clients and removes its socket."""
    with AgentCluster("agent-persist") as c:
        c.start_sched()
        path, st = c.start_agent("--persist", "1")
        c.ftctl_ok("ping")
        t0 = time.monotonic()
        gone = wait_gone(st["pid"], timeout=10)
        dt = time.monotonic() - t0
        check(gone and 0.5 < dt < 5, f"the idle agent exited after {dt:.1f} s", str(st))
        check(not os.path.exists(path), "and removed its socket")
        # SIGTERM: clean exit, socket removed
        path, st = c.start_agent("--persist", "0")
        os.kill(st["pid"], signal.SIGTERM)
        check(wait_gone(st["pid"]) and not os.path.exists(path),
              "SIGTERM ends the agent and removes its socket")
        # agent run: the foreground agent, as under systemd --user
        e = dict(os.environ, FT_SCHEDULER=c.endpoint, FT_CONFIG=os.devnull, FT_AGENT="auto",
                 XDG_RUNTIME_DIR=c.xdg, **c.key_env())
        e.pop("FT_AGENT_SOCKET", None)
        fg = subprocess.Popen([c.ftctl_path, "agent", "run", "--persist", "0"], env=e,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.02)
            st = c.agent_status()
            check(st["pid"] == fg.pid, "agent run serves in the foreground", str(st))
            r = c.ftctl("agent", "run")
            check(r.returncode == 1 and "already listens" in r.stderr,
                  "a second agent run says one already listens (exit 1)", r.stderr)
            fg.send_signal(signal.SIGINT)
            out, err = fg.communicate(timeout=10)
        finally:
            if fg.poll() is None:
                fg.kill()
                fg.wait()
        check(fg.returncode == 0 and "listening on" in err and not os.path.exists(path),
              "SIGINT: exit 0, its log on stderr, the socket removed", f"{fg.returncode} {err}")
        # a refused key is reported through the agent as directly
        bad = os.path.join(c.dir, "stranger.key")
        line = c.ftctl_ok("keygen", bad, "stranger", "default", "user").stdout
        env = {"FT_KEY": bad}
        path, st = c.start_agent("--persist", "0", env=env)
        t0 = time.monotonic()
        r, ph = traced(c, "ping", env=env, ok=False)
        dt = time.monotonic() - t0
        check(r.returncode == 3 and "refused this key" in r.stderr and dt < 3,
              f"an unknown key through the agent: exit 3, 'refused this key', {dt:.1f} s",
              f"{r.returncode} {r.stderr}")
        check("agent-sent" in ph and "zmq-context" not in ph, "it went through the agent", str(ph))
        # refused again at once, however soon after the last refusal
        for i in range(3):
            t0 = time.monotonic()
            r = c.ftctl("ping", env=env)
            check(r.returncode == 3 and "refused this key" in r.stderr and
                  time.monotonic() - t0 < 3, f"refused again ({i + 1}), at once", r.stderr)
        # the operator lists the key: the same agent serves it without a restart
        c.list_key(line)
        r = c.ftctl("ping", env=env)
        check(r.returncode == 0 and c.agent_status(env=env)["pid"] == st["pid"],
              "once the key is listed, the same agent relays its requests",
              f"{r.returncode} {r.stderr}")
        c.ftctl_ok("agent", "stop", env=env)


TESTS = {
    "same_outcome": same_outcome,
    "sched_restart": sched_restart,
    "stale_socket": stale_socket,
    "private": private,
    "bad_frames": bad_frames,
    "persist_exit": persist_exit,
}

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
