#!/usr/bin/env python3
"""Accounting, cost and reports on real daemons (ftsched, ftworker, ftctl on loopback).

accounting_exact  every interval billed in the ledger matches the time its rank really
                  ran (timestamps the rank writes itself) within one second, across a
                  completed job, a failure, a requeue, a cancellation and a scheduler
                  SIGKILL + restart; usage sums the ledger to the millisecond; the
                  restart gap is reported as unobserved.
measured_energy   a GPU with an energy counter (fake NVML at a known power), one with
                  only power readings (integrated by the worker), and a CPU
                  device with a RAPL counter (a file the job itself advances) bill
                  measured energy; an emulated GPU's is estimated; report rows say which.
cost_columns      usage by team / gpu_model / day carries cost, energy and cloud figures
                  equal to the cost file's formulas worked here by hand; csv and json.
budget_hold       a team over its monthly GPU-hour budget has its new jobs held with a
                  visible reason while other teams' jobs run; the report shows it.
html_report       ftctl report --html renders in headless Chromium: every chart is an
                  SVG with a non-zero size and drawn bars, and the screenshot is not blank.
Exit 0 pass, 1 fail, 77 skip.
"""
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from ftcluster import Cluster, SkipTest, TestFailure, check, run_tests  # noqa: E402

MODEL = "NVIDIA H100 80GB HBM3"
COST_FILE = """# test cost model
[site]
currency = EUR
electricity_per_kwh = 0.20
pue = 1.5
maintenance_per_year = 0.10
other_per_year = 0
[gpu "H100"]
price = 43830
server_overhead = 2
years = 4
power_w = 1000
[cloud "cheap"]
H100 = 2.5
[cloud "dear"]
H100 = 12
"""
# Worked by hand from COST_FILE, per GPU-hour:
#   capital     = 43830 x 2 / (4 x 8766)       = 87660 / 35064 = 2.5
#   maintenance = 43830 x 2 x 0.10 / 8766      = 8766 / 8766   = 1.0
#   energy      = 1000 W -> 1 kWh x 1.5 x 0.20                 = 0.3
CAPITAL, MAINT, ENERGY_COST, KWH_PER_H = 2.5, 1.0, 0.3, 1.0


def stamp_cmd(dirpath, tag, body):
    """A shell command that records its own start and end (unix seconds, ns)."""
    pre = f"date +%s.%N > {dirpath}/{tag}.$FT_ATTEMPT.start; "
    post = f"date +%s.%N > {dirpath}/{tag}.$FT_ATTEMPT.end"
    return ["sh", "-c", f"trap '{post}; exit 143' TERM; {pre}{body}; rc=$?; {post}; exit $rc"]


def read_stamp(path):
    with open(path) as f:
        return float(f.read().strip())


def ledger_rows(db, job):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT attempt, rank, start_ms, end_ms FROM allocations "
                           "WHERE job_id = ? ORDER BY attempt, rank", (job,)).fetchall()
    finally:
        con.close()


def submit_spec(c, spec, team="ml", user="alice"):
    path = os.path.join(c.dir, f"spec-{time.monotonic_ns()}.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return c.submit("--team", team, path, env={"USER": user})


def cluster_with_cost(c, extra_cost="", gpus=2):
    cost = os.path.join(c.dir, "cost.ini")
    with open(cost, "w") as f:
        f.write(COST_FILE + extra_cost)
    c.start_sched(extra=("--cost", cost))
    c.start_worker("n1", gpus=gpus, extra=("--gpu-model", MODEL))
    c.wait_nodes_ready(["n1"])
    return cost


def test_accounting_exact():
    with Cluster("ft-ledger") as c:
        cluster_with_cost(c)
        d = c.dir
        # completed
        j_ok = submit_spec(c, {"name": "ok", "kind": "exec", "gpus": 1,
                               "command": stamp_cmd(d, "ok", "sleep 1.5")})
        # the job's own failure, no requeue
        j_fail = submit_spec(c, {"name": "fail", "kind": "exec", "gpus": 1, "max_retries": 0,
                                 "command": stamp_cmd(d, "fail", "sleep 1; false")})
        c.wait_state(j_ok, ["COMPLETED"])
        c.wait_state(j_fail, ["FAILED"])
        # requeue: attempt 1 fails, attempt 2 succeeds
        j_rq = submit_spec(c, {"name": "requeue", "kind": "exec", "gpus": 1, "max_retries": 1,
                               "requeue_on_failure": True,
                               "command": stamp_cmd(d, "rq", 'sleep 1; test "$FT_ATTEMPT" = 2')})
        # cancelled while running
        j_cancel = submit_spec(c, {"name": "cancel", "kind": "exec", "gpus": 1,
                                   "command": stamp_cmd(d, "cancel", "sleep 30 & wait")})
        c.wait_state(j_cancel, ["RUNNING"])
        time.sleep(1.5)
        c.ftctl_ok("cancel", str(j_cancel))
        c.wait_state(j_rq, ["COMPLETED"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(r[3] is None for r in ledger_rows(c.db, j_cancel)):
            time.sleep(0.1)
        # scheduler SIGKILL while a 2-GPU job runs, restarted 2 s later
        j_rs = submit_spec(c, {"name": "restart", "kind": "exec", "gpus": 2,
                               "command": stamp_cmd(d, "rs", "sleep 5")})
        c.wait_state(j_rs, ["RUNNING"])
        time.sleep(2.5)  # past a ledger checkpoint (every 2 s)
        c.kill(c.sched)
        killed = time.time()
        time.sleep(2)
        c.start_sched(extra=("--cost", os.path.join(d, "cost.ini")))
        restarted = time.time()
        c.wait_state(j_rs, ["COMPLETED"], timeout=40)

        total_ms = 0
        for job, tag in ((j_ok, "ok"), (j_fail, "fail"), (j_rq, "rq"), (j_cancel, "cancel"),
                         (j_rs, "rs")):
            rows = ledger_rows(c.db, job)
            check(rows, f"job {job} ({tag}) has ledger intervals: {rows}")
            for attempt, rank, a, b in rows:
                check(b is not None, f"job {job} ({tag}) attempt {attempt} rank {rank} is closed")
                st = os.path.join(d, f"{tag}.{attempt}.start")
                en = os.path.join(d, f"{tag}.{attempt}.end")
                ran = read_stamp(en) - read_stamp(st)
                billed = (b - a) / 1000.0
                diff = billed - ran
                print(f"job {job} {tag} attempt {attempt} rank {rank}: billed {billed:.3f} s, "
                      f"rank ran {ran:.3f} s, difference {diff:+.3f} s")
                check(-0.05 <= diff <= 1.0,
                      f"{tag} attempt {attempt} rank {rank}: billed within 1 s of the rank's "
                      f"own run time ({diff:+.3f} s)")
                total_ms += b - a
            if tag == "rq":
                check([r[0] for r in rows] == [1, 2], f"requeued job billed once per attempt: {rows}")
            if tag == "rs":
                check(len(rows) == 2, f"2-GPU job has two intervals: {rows}")
        # no double billing: the same device never has overlapping intervals
        con = sqlite3.connect(f"file:{c.db}?mode=ro", uri=True)
        ov = con.execute("SELECT count(*) FROM allocations a JOIN allocations b ON a.node = b.node"
                         " AND a.device_index = b.device_index AND a.id < b.id"
                         " AND a.start_ms < b.end_ms AND b.start_ms < a.end_ms").fetchone()[0]
        unobs = con.execute("SELECT l.unobserved_ms FROM ledger_intervals l JOIN allocations a"
                            " ON a.id = l.alloc_id WHERE a.job_id = ?", (j_rs,)).fetchall()
        events = con.execute("SELECT message FROM events WHERE kind = 'ledger'").fetchall()
        con.close()
        check(ov == 0, f"no device is billed twice for the same time ({ov} overlaps)")
        gap = restarted - killed
        print(f"scheduler down {gap:.2f} s; unobserved per interval (ms): {unobs}; events: {events}")
        check(len(unobs) == 2 and all(gap - 0.5 <= u[0] / 1000.0 <= gap + 2.5 for u in unobs),
              f"the restart gap is recorded on both open intervals ({unobs}, down {gap:.2f} s;"
              " at most one 2 s checkpoint period more)")
        check(events and "open interval" in events[0][0], f"a 'ledger' event tells of the gap: {events}")
        u = c.ftctl_json("usage", "--by", "job")
        got = sum(r["gpu_seconds"] for r in u["rows"])
        print(f"usage --by job: {got:.3f} GPU-s; ledger sum {total_ms / 1000:.3f} GPU-s")
        check(abs(got - total_ms / 1000.0) < 0.002, "usage adds up the ledger to the millisecond")
        rs = [r for r in u["rows"] if r["key"] == str(j_rs)][0]
        check(rs["unobserved_seconds"] > 1, f"usage shows the unobserved seconds ({rs['unobserved_seconds']})")
        t = c.ftctl_ok("usage", "--by", "job").stdout
        print(t)
        check("UNOBSERVED_S" in t and "TOTAL" in t, "the table has the unobserved column and a total")


def test_cost_columns():
    with Cluster("ft-cost") as c:
        cluster_with_cost(c)
        d = c.dir
        j1 = submit_spec(c, {"name": "a", "kind": "exec", "gpus": 2, "command": ["sleep", "1.5"]},
                         team="vision")
        j2 = submit_spec(c, {"name": "b", "kind": "exec", "gpus": 1, "command": ["sleep", "1"]},
                         team="nlp")
        c.wait_state(j1, ["COMPLETED"])
        c.wait_state(j2, ["COMPLETED"])
        for by in ("team", "gpu_model", "day", "user"):
            u = c.ftctl_json("usage", "--by", by, "--cloud", "dear")
            check(u["currency"] == "EUR" and u["clouds"] == ["cheap", "dear"],
                  f"by {by}: currency and offers from the cost file ({u['currency']}, {u['clouds']})")
            for r in u["rows"]:
                h = r["gpu_hours"]
                want = {"cost_capital": h * CAPITAL, "cost_maintenance": h * MAINT,
                        "cost_energy": h * ENERGY_COST, "energy_kwh": h * KWH_PER_H,
                        "cost": h * (CAPITAL + MAINT + ENERGY_COST), "cloud_cost": h * 12,
                        "difference": h * (12 - CAPITAL - MAINT - ENERGY_COST)}
                for k, v in want.items():
                    check(abs(r[k] - v) < 1e-9, f"by {by} '{r['key']}': {k} {r[k]:.9f} = {v:.9f}")
                check(r["energy_source"] == "estimated" and r["cloud_offer"] == "dear",
                      f"by {by} '{r['key']}': emulated GPUs have estimated energy; offer 'dear'")
                cheap = [x for x in r["cloud"] if x["offer"] == "cheap"][0]
                check(abs(cheap["cost"] - 2.5 * h) < 1e-9 and cheap["unpriced_gpu_hours"] == 0,
                      f"by {by} '{r['key']}': cheap offer {cheap}")
        u = c.ftctl_json("usage", "--by", "team")
        teams = {r["key"]: r for r in u["rows"]}
        check(set(teams) == {"vision", "nlp"}, f"two teams: {sorted(teams)}")
        check(1.9 * 1.5 / 3600 < teams["vision"]["gpu_hours"] < 2 * 3.5 / 3600,
              f"vision used two GPUs for about 1.5 s ({teams['vision']['gpu_hours'] * 3600:.2f} GPU-s)")
        csv = c.ftctl_ok("-o", "csv", "usage", "--by", "team").stdout.splitlines()
        print("\n".join(csv))
        check(csv[0].startswith("TEAM,GPU_HOURS,JOBS,INTERVALS,ENERGY_KWH,SRC,COST,"),
              f"csv header: {csv[0]}")
        check(len(csv) == 4 and csv[-1].startswith("TOTAL,"), "csv: header, two teams, total")
        r = c.ftctl("usage", "--cloud", "nowhere")
        check(r.returncode == 1 and "no cloud offer 'nowhere'" in r.stderr,
              f"an unknown offer is refused: {r.stderr.strip()}")
        with open(os.path.join(d, "cost.ini"), "a") as f:
            f.write("[site]\npue = 9\n")
        r = c.ftctl("usage")
        check(r.returncode == 1 and "cost.ini:" in r.stderr and "'pue'" in r.stderr,
              f"a bad cost file edit is reported with file, line and key: {r.stderr.strip()}")


def test_measured_energy():
    fake = os.environ.get("FAKE_NVML", "")
    if not fake or not os.path.exists(fake):
        raise SkipTest("the fake NVML library is not built")
    with Cluster("ft-energy") as c:
        cost = os.path.join(c.dir, "cost.ini")
        with open(cost, "w") as f:
            f.write(COST_FILE + '[gpu "cpu"]\nprice = 0\npower_w = 100\n')
        rapl = os.path.join(c.dir, "energy_uj")
        with open(rapl, "w") as f:
            f.write("1000000\n")
        c.start_sched(extra=("--cost", cost))
        saved = dict(os.environ)
        try:
            os.environ.update({"FT_NVML_LIBRARY": fake, "FAKE_NVML_POWER_W": "500"})
            c.start_worker("g1")
            os.environ.pop("FT_NVML_LIBRARY")
            os.environ.pop("FAKE_NVML_POWER_W")
            os.environ["FT_RAPL_ENERGY"] = rapl
            c.start_worker("c1", cpus=1)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        c.start_worker("e1", gpus=1, extra=("--gpu-model", MODEL))
        nodes = c.wait_nodes_ready(["g1", "c1", "e1"])
        devs = {n["name"]: n["devices"] for n in nodes["nodes"]}
        print("devices:", json.dumps(devs))
        gpu_model = devs["g1"][0]["model"]
        # a 2-GPU job on g1: device 0 has the energy counter, device 1 only power
        # readings (integrated by the worker), both at 500 W
        jg = submit_spec(c, {"name": "gpu", "kind": "exec", "gpus": 2, "gpu_model": gpu_model,
                             "command": ["sleep", "2"]}, team="g")
        jc = submit_spec(c, {"name": "cpu", "kind": "exec", "gpus": 1, "device": "cpu",
                             "command": ["sh", "-c", f"sleep 0.5; echo 4000000 > {rapl}"]},
                         team="c")
        je = submit_spec(c, {"name": "emu", "kind": "exec", "gpus": 1, "gpu_model": MODEL,
                             "command": ["sleep", "1"]}, team="e")
        for j in (jg, jc, je):
            c.wait_state(j, ["COMPLETED"], timeout=30)
        con = sqlite3.connect(f"file:{c.db}?mode=ro", uri=True)
        all_rows = con.execute(
            "SELECT a.job_id, a.node, a.device_index, a.start_ms, a.end_ms, l.energy_mj"
            " FROM allocations a LEFT JOIN ledger_intervals l ON l.alloc_id = a.id").fetchall()
        con.close()
        print("ledger:", all_rows)
        rows = {r[0]: r[1:] for r in all_rows}
        gpu_rows = sorted(r[1:] for r in all_rows if r[0] == jg)
        check(len(gpu_rows) == 2 and all(r[0] == "g1" for r in gpu_rows), "two GPU intervals on g1")
        for node, dev, a, b, mj in gpu_rows:
            secs = (b - a) / 1000.0
            how = "energy counter" if dev == 0 else "integrated power samples"
            check(mj is not None, f"device {dev}: energy measured from its {how} ({mj} mJ)")
            # 500 W = 500 mJ/ms over the rank's life, a little less than the interval
            check(mj is not None and 0.8 * 500 * secs * 1000 <= mj <= 500 * secs * 1000 * 1.02,
                  f"device {dev}: {mj} mJ is about 500 W x {secs:.2f} s ({how})")
        node, dev, a, b, mj = rows[jc]
        check(node == "c1" and mj == 3000, f"the CPU job billed the RAPL delta: {mj} mJ = 3000")
        check(rows[je][4] is None, "the emulated GPU has no measurement (estimated)")
        u = {r["key"]: r for r in c.ftctl_json("usage", "--by", "team")["rows"]}
        print({k: (v["energy_kwh"], v["energy_source"]) for k, v in u.items()})
        check(u["c"]["energy_source"] == "measured" and abs(u["c"]["energy_kwh"] - 3000 / 3.6e9) < 1e-15,
              f"usage: team c measured {u['c']['energy_kwh']} kWh = 3000 mJ")
        check(u["g"]["energy_source"] == "measured", "usage: team g measured")
        check(u["e"]["energy_source"] == "estimated" and
              abs(u["e"]["energy_kwh"] - u["e"]["gpu_hours"] * KWH_PER_H) < 1e-12,
              "usage: team e estimated at the configured 1000 W")
        check(abs(u["c"]["cost_energy"] - 3000 / 3.6e9 * 1.5 * 0.20) < 1e-15,
              "measured energy is priced at PUE x tariff")


def test_budget_hold():
    budget = "[budget \"vision\"]\ngpu_hours = 0.0004\nover = hold\n"
    with Cluster("ft-budget") as c:
        cluster_with_cost(c, extra_cost=budget)
        j1 = submit_spec(c, {"name": "burn", "kind": "exec", "gpus": 1, "command": ["sleep", "2"]},
                         team="vision")
        c.wait_state(j1, ["COMPLETED"])
        # 2 GPU-s > 0.0004 h = 1.44 GPU-s: the next evaluation (every 10 s) holds vision
        deadline = time.monotonic() + 15
        rep = None
        while time.monotonic() < deadline:
            rep = c.ftctl_json("report")
            b = [x for x in rep["budgets"] if x["team"] == "vision"][0]
            if b["over"]:
                break
            time.sleep(0.3)
        check(b["over"] and b["action"] == "hold", f"report: vision over budget ({b})")
        time.sleep(11)  # at least one budget evaluation after the burn
        j2 = submit_spec(c, {"name": "held", "kind": "exec", "gpus": 1, "command": ["true"]},
                         team="vision")
        j3 = submit_spec(c, {"name": "other", "kind": "exec", "gpus": 1, "command": ["true"]},
                         team="nlp")
        c.wait_state(j3, ["COMPLETED"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            j = c.job(j2)
            if "over budget" in j.get("reason", ""):
                break
            time.sleep(0.3)
        print(f"held job: state {j['state']}, reason '{j['reason']}'")
        check(j["state"] == "PENDING" and j["reason"].startswith("held: over budget: team 'vision'"),
              "vision's new job waits with a visible HELD reason while nlp's ran")
        t = c.ftctl_ok("report").stdout
        print(t)
        check("OVER: held" in t, "ftctl report shows the held team")
        t = c.ftctl_ok("usage", "--by", "team").stdout
        print(t)
        check("Budgets this month" in t and "vision" in t and "OVER: new jobs held" in t,
              "ftctl usage shows the budget burn")
        u = c.ftctl_json("usage", "--by", "team")
        b = u["budgets"][0]
        check(b["team"] == "vision" and b["over"] and b["used_gpu_hours"] > b["budget_gpu_hours"],
              f"usage -o json carries the burn: {b}")
        if hasattr(c, "add_key") and not getattr(c, "insecure", True):
            bob = c.add_key("bob", "bob", "nlp", "user")
            carol = c.add_key("carol", "carol", "vision", "user")
            time.sleep(1.5)  # ftsched reloads its keys file within a second
            u = c.ftctl_json("usage", "--by", "team", env=bob)
            check(not u.get("budgets"), f"a user of team nlp does not see vision's budget: {u.get('budgets')}")
            u = c.ftctl_json("usage", "--by", "team", env=carol)
            check([x["team"] for x in u.get("budgets", [])] == ["vision"],
                  "a user of team vision sees her own team's budget")


PROBE = """<script>
(function () {
  var out = [];
  document.querySelectorAll('svg[id^="chart-"]').forEach(function (s) {
    var r = s.getBoundingClientRect(), drawn = 0;
    s.querySelectorAll('rect').forEach(function (b) {
      var q = b.getBoundingClientRect(); if (q.width > 0 && q.height > 0) drawn++; });
    out.push(s.id + ' ' + Math.round(r.width) + 'x' + Math.round(r.height) + ' ' + drawn);
  });
  var p = document.createElement('pre'); p.id = 'probe'; p.textContent = out.join('\\n');
  document.body.appendChild(p);
})();
</script></body>"""


def png_colours(path):
    """Distinct RGB(A) pixel values of an 8-bit PNG (stdlib only)."""
    with open(path, "rb") as f:
        data = f.read()
    check(data[:8] == b"\x89PNG\r\n\x1a\n", "screenshot is a PNG")
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    bpp = {2: 3, 6: 4}[ctype]
    raw = zlib.decompress(idat)
    stride, prev, colours = w * bpp, bytearray(w * bpp), set()
    for y in range(h):
        ft, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, cc = prev[i], prev[i - bpp] if i >= bpp else 0
            if ft == 1:
                line[i] = (line[i] + a) & 255
            elif ft == 2:
                line[i] = (line[i] + b) & 255
            elif ft == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else cc)) & 255
        if y % 4 == 0:
            for x in range(0, stride, bpp * 2):
                colours.add(bytes(line[x:x + 3]))
        prev = line
    return colours


def chromium():
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True,
                       timeout=600)
        p = shutil.which("chromium")
        if p:
            return p
    raise SkipTest("chromium is not installed and cannot be installed here")


def test_html_report():
    browser = chromium()
    with Cluster("ft-html") as c:
        cluster_with_cost(c, extra_cost="[budget \"vision\"]\nmoney = 1000\n")
        jobs = [submit_spec(c, {"name": n, "kind": "exec", "gpus": g, "command": ["sleep", s]},
                            team=t)
                for n, g, s, t in (("<b>x</b>", 2, "1.2", "vision"), ("n2", 1, "0.8", "nlp"))]
        for j in jobs:
            c.wait_state(j, ["COMPLETED"])
        page = os.path.join(c.dir, "report.html")
        c.ftctl_ok("report", "--html", page)
        html = open(page, encoding="utf-8").read()
        check("<script" not in html and "http://" not in html and "https://" not in html,
              "the page has no script and no external resource")
        check("&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html, "job names are escaped")
        probe = os.path.join(c.dir, "probe.html")
        with open(probe, "w", encoding="utf-8") as f:
            f.write(html.replace("</body>", PROBE))
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--user-data-dir=" + os.path.join(c.dir, "chrome")]
        r = subprocess.run([browser, *flags, "--dump-dom", "file://" + probe],
                           capture_output=True, text=True, timeout=120)
        dom = r.stdout
        start = dom.find('<pre id="probe">')
        check(start >= 0, f"chromium rendered the page (rc {r.returncode}, {r.stderr[-500:]})")
        lines = dom[start + 16:dom.find("</pre>", start)].split("\n")
        print("rendered charts:", lines)
        seen = {}
        for ln in lines:
            name, size, drawn = ln.split()
            w, h = (int(v) for v in size.split("x"))
            seen[name] = (w, h, int(drawn))
        for name in ("chart-team-days", "chart-cost", "chart-util", "chart-top-jobs"):
            w, h, drawn = seen.get(name, (0, 0, 0))
            check(w > 100 and h > 50 and drawn > 0,
                  f"{name}: rendered {w}x{h} px with {drawn} visible bars")
        shot = os.path.join(c.dir, "shot.png")
        subprocess.run([browser, *flags, "--screenshot=" + shot, "--window-size=900,1400",
                        "file://" + page], capture_output=True, timeout=120)
        colours = png_colours(shot)
        print(f"screenshot: {len(colours)} distinct colours sampled")
        check(len(colours) >= 8, "the screenshot is not blank (many colours: bars, text, grid)")


TESTS = {
    "accounting_exact": test_accounting_exact,
    "cost_columns": test_cost_columns,
    "measured_energy": test_measured_energy,
    "budget_hold": test_budget_hold,
    "html_report": test_html_report,
}

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
