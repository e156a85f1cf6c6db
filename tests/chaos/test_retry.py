#!/usr/bin/env python3
"""Client retries through a stalled or killed scheduler: ftctl submit resends
once with the same request_id after its time-out, and ftsched turns the pair
into one job. Two cases: the scheduler is frozen (SIGSTOP) while the request
and its retry queue up, then resumes and sees both; and it is SIGKILLed with
the first request unanswered and restarted before the retry. A user key
(not admin) submits, so the identity stamped from the key is part of the
de-duplication. Python standard library only.
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from ftcluster import Cluster, check, run_tests  # noqa: E402


def submit_bg(c, env):
    e = dict(os.environ, FT_SCHEDULER=c.endpoint, FT_CONFIG=os.devnull, **env)
    return subprocess.Popen([c.ftctl_path, "--timeout", "1", "submit", "--", "true"], env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=c.dir)


def count_jobs(c):
    return len(json.loads(c.ftctl_ok("-o", "json", "ls", "--all").stdout)["jobs"])


def retry_no_duplicate():
    with Cluster("retry") as c:
        c.start_sched()
        alice = c.add_key("alice", "alice", "ml", "user")
        time.sleep(1.2)  # keys file reload
        c.ftctl_ok("ping", env=alice)
        # 1: frozen scheduler; the request and its retry both arrive later
        c.sched.send_signal(signal.SIGSTOP)
        p = submit_bg(c, alice)
        time.sleep(1.6)  # past the first time-out: the retry is sent
        c.sched.send_signal(signal.SIGCONT)
        out, err = p.communicate(timeout=30)
        check(p.returncode == 0 and out.strip().isdigit(),
              "submit through a frozen scheduler succeeds", f"{p.returncode} {out} {err}")
        time.sleep(0.5)
        check(count_jobs(c) == 1, "the request and its retry made one job")
        check(c.job(int(out))["user"] == "alice", "the job is alice's (from the key)")
        # 2: killed with the first request unanswered, restarted before the retry
        c.sched.send_signal(signal.SIGSTOP)
        p = submit_bg(c, alice)
        time.sleep(0.3)
        c.kill(c.sched, signal.SIGKILL)
        c.start_sched()
        out, err = p.communicate(timeout=30)
        check(p.returncode == 0 and out.strip().isdigit(),
              "submit across a scheduler SIGKILL succeeds on the retry", f"{p.returncode} {out} {err}")
        check(count_jobs(c) == 2, "and made exactly one more job")


TESTS = {"retry_no_duplicate": retry_no_duplicate}

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
