#!/usr/bin/env python3
"""Security through the real daemons: CURVE with ftsched's ZAP handler, roles
and teams from the keys file, path roots for job specs, and the explicit
--insecure mode. Uses tests/integration's ftcluster (secure by default).

Python standard library only. Run: test_security.py TEST_NAME.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from ftcluster import Cluster, check, run_tests  # noqa: E402


def unlisted_key_refused():
    with Cluster("sec-unlisted") as c:
        c.start_sched()
        c.ftctl_ok("ping")
        check(True, "the admin key from 'ftsched init' is admitted")
        # a key pair made with keygen but never listed
        stranger = os.path.join(c.dir, "stranger.key")
        r = c.ftctl("keygen", stranger)
        check(r.returncode == 0 and len(r.stdout.split()[0]) == 40, "keygen prints a 40-char key")
        check((os.stat(stranger).st_mode & 0o777) == 0o600, "keygen writes the key file 0600")
        t0 = time.monotonic()
        r = c.ftctl("--timeout", "0.5", "ping", env={"FT_KEY": stranger})
        check(r.returncode == 3, "an unlisted key gets no answer (exit 3)",
              f"{r.returncode} {r.stdout} {r.stderr}")
        print(f"refused after {time.monotonic() - t0:.1f} s of retries", flush=True)
        # no keys at all: a plain client cannot talk to a CURVE server
        r = c.ftctl("--timeout", "0.5", "ping", env={"FT_KEY": "", "FT_SERVER_KEY": ""})
        check(r.returncode == 3, "a client without keys gets no answer", f"{r.returncode}")
        # the right client key but a wrong server key: the handshake fails
        other = os.path.join(c.dir, "other.key")
        c.ftctl_ok("keygen", other)
        r = c.ftctl("--timeout", "0.5", "ping", env={"FT_SERVER_KEY": other})
        check(r.returncode == 3, "a wrong server key gets no answer", f"{r.returncode}")
        log = open(os.path.join(c.dir, "ftsched.log")).read()
        check("refused an unlisted key" in log, "ftsched logs the refused key")
        # an operator lists the key: admitted without a restart
        with open(os.path.join(c.keys, "keys"), "a") as f:
            f.write(r_line(c, stranger, "zoe", "ml", "user"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = c.ftctl("--timeout", "0.5", "ping", env={"FT_KEY": stranger})
            if r.returncode == 0:
                break
        check(r.returncode == 0, "a key added to the keys file is admitted after reload")
        # a half-configured client says what is missing
        r = c.ftctl("ping", env={"FT_SERVER_KEY": ""})
        check(r.returncode != 0 and "FT_SERVER_KEY" in r.stderr,
              "FT_KEY without FT_SERVER_KEY is an error naming it", r.stderr.strip())


def r_line(c, keyfile, user, team, role):
    """The keys-file line for an existing key file."""
    pub = [ln.split("=", 1)[1].strip() for ln in open(keyfile)
           if ln.startswith("public")][0]
    return f"{pub} {user} {team} {role}\n"


def roles_and_teams():
    with Cluster("sec-roles") as c:
        c.start_sched()
        alice = c.add_key("alice", "alice", "ml", "user")
        carol = c.add_key("carol", "carol", "ml", "user")
        bob = c.add_key("bob", "bob", "ml", "lead")
        dave = c.add_key("dave", "dave", "vision", "user")
        c.start_worker("n1", gpus=2)
        c.wait_nodes_ready(["n1"])
        time.sleep(1.2)  # the keys file is re-read at most once a second
        a = c.submit("--", "sleep", "30", env=alice)
        d = c.submit("--", "sleep", "30", env=dave)
        job = c.job(a)
        check(job["user"] == "alice" and job["team"] == "ml", "alice's job is alice/ml")

        def refused(args, who, what):
            r = c.ftctl(*args, env=who)
            check(r.returncode == 1 and "forbidden" in (r.stderr + r.stdout).lower() or
                  r.returncode == 1 and "may not" in r.stderr,
                  what, f"{r.returncode} {r.stdout.strip()} {r.stderr.strip()}")

        refused(("cancel", str(a)), dave, "dave (vision) cannot cancel alice's job")
        refused(("logs", str(a)), dave, "dave cannot read alice's logs")
        refused(("show", str(a)), dave, "dave cannot show alice's job")
        refused(("cancel", str(a)), carol, "carol (ml, user) cannot cancel alice's job")
        refused(("cancel", str(d), str(a)), dave, "a cancel list with one foreign job is refused")
        check(c.job(d)["state"] in ("PENDING", "RUNNING"), "...and cancelled nothing")
        ls = json.loads(c.ftctl_ok("-o", "json", "ls", "--all", env=dave).stdout)
        ids = {j["job_id"] for j in ls["jobs"]}
        check(d in ids and a not in ids, "dave's job list shows his job only", str(ids))
        ls = json.loads(c.ftctl_ok("-o", "json", "ls", "--all", env=bob).stdout)
        ids = {j["job_id"] for j in ls["jobs"]}
        check(a in ids and d not in ids, "bob (lead of ml) lists ml's jobs only", str(ids))
        refused(("usage", "--by", "node"), dave, "a user cannot group usage by node")
        refused(("report",), alice, "the report needs the lead role")
        c.ftctl_ok("cancel", str(a), env=bob)
        check(c.wait_state(a, ["CANCELLED"])["state"] == "CANCELLED", "bob (lead) cancels alice's job")
        c.ftctl_ok("cancel", str(d), env=dave)
        c.wait_state(d, ["CANCELLED"])
        check(True, "dave cancels his own job")
        time.sleep(1.5)  # the report's window ends at the current whole second
        rep = json.loads(c.ftctl_ok("-o", "json", "report").stdout)
        teams = {t["team"] for t in rep.get("teams") or []}
        check("vision" in teams, "the admin's report has vision's rows", str(teams))
        r = c.ftctl("-o", "json", "report", env=bob)
        check(r.returncode == 0, "a lead may read the report", r.stderr)
        rep = json.loads(r.stdout)
        teams = {t["team"] for k in ("teams", "team_days", "budgets") for t in rep.get(k) or []}
        tops = {t["job_id"] for t in rep.get("top_jobs") or []}
        check(teams <= {"ml"} and d not in tops,
              "the lead's report shows ml's rows only", f"{teams} {tops}")
        u = json.loads(c.ftctl_ok("-o", "json", "usage", "--by", "team", env=dave).stdout)
        keys = {row["key"] for row in u["rows"]}
        check(keys <= {"vision"}, "dave's usage by team shows vision only", str(keys))
        u = json.loads(c.ftctl_ok("-o", "json", "usage", "--by", "user", env=bob).stdout)
        keys = {row["key"] for row in u["rows"]}
        check("dave" not in keys, "bob's usage by user leaves out vision's users", str(keys))
        u = json.loads(c.ftctl_ok("-o", "json", "usage", "--by", "team").stdout)
        keys = {row["key"] for row in u["rows"]}
        check({"ml", "vision"} <= keys, "the admin sees every team's usage", str(keys))
        # a node key is not a client, a client key is not a node
        node = c.key_env("node-n1.key")
        refused(("ping",), node, "a worker key cannot act as a client")
        c.start_worker("rogue", gpus=1, extra=())
        # start_worker listed a worker key for 'rogue'; run one more with alice's key instead
        p = c._spawn([c.ftworker, "--scheduler", c.endpoint, "--name", "alice-node",
                      "--state-dir", os.path.join(c.dir, "st-an"), "--emulate-gpus", "1"],
                     "ftworker-alice-node.log", alice)
        c.workers["alice-node"] = p
        c.wait_nodes_ready(["rogue"])
        time.sleep(2)
        nodes = json.loads(c.ftctl_ok("-o", "json", "nodes").stdout)["nodes"]
        names = {n["name"]: n["state"] for n in nodes}
        check(names.get("alice-node") != "ready", "a user key cannot register a node", str(names))
        # a node key under another node's name
        p = c._spawn([c.ftworker, "--scheduler", c.endpoint, "--name", "n9",
                      "--state-dir", os.path.join(c.dir, "st-n9"), "--emulate-gpus", "1"],
                     "ftworker-n9.log", node)
        c.workers["n9"] = p
        time.sleep(2)
        nodes = json.loads(c.ftctl_ok("-o", "json", "nodes").stdout)["nodes"]
        names = {n["name"]: n["state"] for n in nodes}
        check(names.get("n9") != "ready", "n1's key cannot register as n9", str(names))


def identity_from_key():
    with Cluster("sec-ident") as c:
        c.start_sched()
        eve = c.add_key("eve", "eve", "ml", "user")
        c.start_worker("n1", gpus=1)
        c.wait_nodes_ready(["n1"])
        j = c.submit("--team", "vision", "--", "true", env=dict(eve, FT_USER="mallory"))
        job = c.job(j)
        check(job["user"] == "eve" and job["team"] == "ml",
              "declared user/team are replaced by the key's (eve/ml)", f"{job['user']}/{job['team']}")
        j = c.submit("--team", "vision", "--", "true")
        check(c.job(j)["team"] == "vision", "an admin may submit on behalf of another team")


def path_roots():
    with Cluster("sec-paths") as c:
        root = os.path.join(c.dir, "allowed")
        outside = os.path.join(c.dir, "outside")
        os.makedirs(os.path.join(root, "model"))
        os.makedirs(outside)
        os.symlink(outside, os.path.join(root, "escape"))
        c.start_sched(extra=["--path-roots", root])

        made = []

        def spec(model, data, out):
            made.append(1)
            p = os.path.join(c.dir, f"spec{len(made)}.json")
            with open(p, "w") as f:
                json.dump({"name": "p", "kind": "lora", "gpus": 1, "device": "any",
                           "train": {"base_model": model, "datasets": [{"path": data}],
                                     "output_dir": out}}, f)
            return p

        ok_model, ok_data, ok_out = (os.path.join(root, "model"), os.path.join(root, "d.jsonl"),
                                     os.path.join(root, "out"))
        cases = [
            ("base_model", spec(os.path.join(root, "..", "outside"), ok_data, ok_out), "'..'"),
            ("datasets[0].path", spec(ok_model, os.path.join(root, "escape", "d.jsonl"), ok_out),
             "a symlink"),
            ("output_dir", spec(ok_model, ok_data, os.path.join(root, "escape", "run")),
             "an output dir below a symlink"),
            ("output_dir", spec(ok_model, ok_data, os.path.join(root, "new", "..", "..", "x")),
             "'..' in a new dir"),
            ("base_model", spec("/etc", ok_data, ok_out), "an absolute path elsewhere"),
        ]
        for field, path, what in cases:
            r = c.ftctl("submit", path)
            check(r.returncode == 1 and field in r.stderr,
                  f"{what} in {field} is refused", f"{r.returncode} {r.stderr.strip()}")
        r = c.ftctl("submit", spec(ok_model, ok_data, ok_out))
        check("allowed root" not in r.stderr, "paths under the root pass the roots check",
              r.stderr.strip())


def insecure_flag():
    with Cluster("sec-insecure", insecure=True) as c:
        c.start_sched()
        c.start_worker("n1", gpus=1)
        c.wait_nodes_ready(["n1"])
        j = c.submit("--", "true")
        c.wait_state(j, ["COMPLETED"])
        log = open(os.path.join(c.dir, "ftsched.log")).read()
        check("INSECURE MODE" in log, "--insecure says so loudly in the log")
        # no keys and no --insecure: ftsched refuses to start
        env = {k: v for k, v in os.environ.items() if k != "FT_INSECURE"}
        import subprocess
        r = subprocess.run([c.ftsched, "--db", os.path.join(c.dir, "x.db"), "--listen",
                            "tcp://127.0.0.1:1"], capture_output=True, text=True, env=env,
                           timeout=10)
        check(r.returncode != 0 and "--insecure" in r.stderr,
              "without keys or --insecure ftsched will not start", r.stderr.strip())


TESTS = {f.__name__: f for f in (unlisted_key_refused, roles_and_teams, identity_from_key,
                                 path_roots, insecure_flag)}

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
