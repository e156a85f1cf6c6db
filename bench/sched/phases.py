#!/usr/bin/env python3
"""Where one `ftctl ping` and one `ftctl submit` spend their time.

Starts ftsched alone (temporary database, CURVE keys unless --insecure,
--log-level debug) and runs N ftctl processes of each kind from a /bin/sh loop
with FTCTL_TRACE=1, which makes ftctl print one line per phase on stderr. It
prints, per phase, the median time since the previous phase, and from the
scheduler's debug log the median time it spent handling the request (and the
commit part of it). The process start before main (loader, libraries) is what
the shell loop's time per process leaves over after ftctl's own last phase.

Each runs once per client path (--path): direct (FT_AGENT=off: each process
makes its own ZeroMQ connection), agent (through an `ftctl agent` started
first: no ZeroMQ context in the process, one framed round trip on a Unix
socket), none (the default setting, auto, with no agent running: the direct
path plus the look for an agent, phase path-direct).

Usage: phases.py [-n N] [--insecure] [--path direct,agent,none] [--sched-arg ARG ...]
Program paths come from $FTSCHED, $FTWORKER, $FTCTL. Python standard library only.
"""
import argparse
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
from ftcluster import Cluster, run_main  # noqa: E402
from sched_bench import agent_status, kill_agent, sh_loop, start_agent  # noqa: E402

TRACE = re.compile(r"^ftctl: trace: (\S+)\s+([0-9.]+) ms\s+\+([0-9.]+) ms$")
HANDLED = re.compile(r"'(\w+)' handled in ([0-9.]+) ms \(commit ([0-9.]+) ms\)")
GROUP = re.compile(r"group commit of (\d+) messages?: ([0-9.]+) ms")


def traced(c, env, argv, n):
    """Runs argv n times with FTCTL_TRACE=1; returns (ms per process, phase
    order, {phase: [ms since previous phase]}, [ms at the last phase])."""
    err_path = os.path.join(c.dir, "trace.txt")
    quoted = " ".join("'" + a + "'" for a in argv)
    script = (f'i=0; while [ $i -lt {n} ]; do {quoted} >/dev/null 2>>{err_path} || exit 1; '
              f'i=$((i+1)); done')
    if os.path.exists(err_path):
        os.unlink(err_path)
    t0 = time.perf_counter()
    sh_loop(["/bin/sh", "-c", script], 1, dict(env, FTCTL_TRACE="1"), c.dir)
    per_ms = (time.perf_counter() - t0) * 1000 / n
    order, steps, ends = [], {}, []
    with open(err_path) as f:
        for line in f:
            m = TRACE.match(line.strip())
            if not m:
                continue
            name, at, step = m.group(1), float(m.group(2)), float(m.group(3))
            if name not in steps:
                order.append(name)
                steps[name] = []
            steps[name].append(step)
            if name == "closed":
                ends.append(at)
    return per_ms, order, steps, ends


def handled(c, kind):
    """Medians of the scheduler's time for kind, ms: handling, and the commit
    that made it durable (the group commit right after it)."""
    total, commit, last = [], [], None
    with open(os.path.join(c.dir, "ftsched.log"), errors="replace") as f:
        for line in f:
            m = HANDLED.search(line)
            if m:
                last = m.group(1)
                if last == kind:
                    total.append(float(m.group(2)))
                continue
            g = GROUP.search(line)
            if g and last == kind and g.group(1) == "1":
                commit.append(float(g.group(2)))
            last = None
    if not total:
        return None
    return statistics.median(total), statistics.median(commit) if commit else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="processes of each kind (default 200)")
    ap.add_argument("--insecure", action="store_true", help="run without CURVE")
    ap.add_argument("--path", default="direct,agent",
                    help="client paths, comma-separated: direct, agent, none "
                         "(default direct,agent)")
    ap.add_argument("--sched-arg", action="append", default=[],
                    help="extra ftsched argument (repeatable), e.g. --sched-arg=--db-sync=normal")
    args = ap.parse_args()
    if args.n < 1:
        ap.error("-n must be at least 1")
    paths = [p.strip() for p in args.path.split(",") if p.strip()]
    if not paths or any(p not in ("direct", "agent", "none") for p in paths):
        ap.error("--path takes direct, agent and none, comma-separated")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    with Cluster("ft-phases", insecure=args.insecure) as c:
        c.start_sched(["--log-level", "debug", *args.sched_arg])
        env = dict(os.environ, FT_SCHEDULER=c.endpoint, FT_CONFIG=os.devnull, FT_AGENT="off",
                   **c.key_env())
        env.pop("FT_AGENT_SOCKET", None)
        true_ms = sh_loop(["/bin/true"], args.n, env, c.dir) * 1000 / args.n
        version_ms = sh_loop([c.ftctl_path, "--version"], args.n, env, c.dir) * 1000 / args.n
        print(f"load average {load} at the start; {args.n} processes each; "
              f"{'no CURVE' if args.insecure else 'CURVE on'}; {' '.join(args.sched_arg)}")
        print(f"{'/bin/true':<28}{true_ms:8.3f} ms per process")
        print(f"{'ftctl --version':<28}{version_ms:8.3f} ms per process")
        xdg = os.path.join(c.dir, "xdg")
        os.mkdir(xdg, 0o700)
        for path in paths:
            penv = dict(env)
            if path != "direct":
                penv.update(FT_AGENT="auto", XDG_RUNTIME_DIR=xdg)
            pid = start_agent(c, penv) if path == "agent" else None
            try:
                for kind, argv in (("ping", [c.ftctl_path, "ping"]),
                                   ("submit", [c.ftctl_path, "submit", "--", "true"])):
                    per_ms, order, steps, ends = traced(c, penv, argv, args.n)
                    in_main = statistics.median(ends) if ends else 0.0
                    print(f"ftctl {kind}, path {path}: {per_ms:.3f} ms per process from sh; "
                          f"medians:")
                    print(f"  {'before main (loader) + exit':<26}{per_ms - in_main:8.3f} ms")
                    for name in order:
                        print(f"  {name:<26}{statistics.median(steps[name]):8.3f} ms")
                    h = handled(c, kind)
                    if h:
                        print(f"  (scheduler: handled in {h[0]:.3f} ms, then committed in "
                              f"{h[1]:.3f} ms)")
                if path == "agent":
                    st = agent_status(c, penv)
                    print(f"  (agent: {st['relayed']} requests relayed)")
                    sh_loop([c.ftctl_path, "agent", "stop"], 1, penv, c.dir)
            finally:
                if pid:
                    kill_agent(pid)  # a no-op after the stop; covers a failure
    return 0


if __name__ == "__main__":
    run_main(main)
