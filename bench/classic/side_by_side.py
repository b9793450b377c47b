#!/usr/bin/env python
"""The classic stack and eventsift, side by side, in interleaved rounds on
the same machine and the same topic (run by bench/classic/run.sh, which
builds, starts Kafka and pre-fills the topic).

Drain: the seed's three Spark jobs (drain.py, availableNow) against
`eventsift writer --exit-at-end`, each from process start until every event
is committed: Spark's queries have terminated (drain.py prints DRAINED),
eventsift has exited. For Spark: wall time, CPU (user + system of the whole
process tree, reaped children included, read at that moment), peak RSS of
the process tree (sampled every 50 ms); for eventsift, one process: the
kernel's CPU and peak RSS at its exit. Both stacks' rows are counted after
each drain (not timed). eventsift runs twice a round: with its compiled-plugin
cache kept (the --data-dir of the round before: how a daemon restarts) and
cold (a new --data-dir: its first start on a machine).

HTTP: the seed's request mix (bench/seed.lua) through wrk at each connection
count, against the seed's Flask app under gunicorn (2 workers x 8 threads)
and `eventsift api`, interleaved.

Prints the table the issue asks for, medians and ratios; with --json FILE
also writes every measurement.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- process trees ------------------------------------------------------------


def _stat(pid):
    """The fields of /proc/<pid>/stat after the command name (state first),
    or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (fields := _stat(d)) is not None:
            kids.setdefault(int(fields[1]), []).append(int(d))
    return kids


def tree(pid):
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_cpu(pid):
    """CPU seconds of pid and its descendants (reaped children included)."""
    total = 0
    for p in tree(pid):
        fields = _stat(p)
        if fields is None:
            continue
        # utime stime cutime cstime: fields 14-17 of stat, 11-14 here.
        total += sum(int(x) for x in fields[11:15])
    return total / TICK


def tree_rss(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


class PeakRss:
    """Samples a process tree's summed RSS every 50 ms until stopped."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(0.05)

    def stop(self):
        self._stop.set()
        self._t.join()
        return self.peak


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- drains -------------------------------------------------------------------


def drain_classic(a, work):
    out = tempfile.mkdtemp(dir=work, prefix="spark-")
    t0 = time.time()
    proc = subprocess.Popen(
        [a.classic_python, os.path.join(HERE, "drain.py"), a.kafka, a.topic, out],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=open(os.path.join(work, "spark.log"), "ab"),
        text=True,
    )
    rss = PeakRss(proc.pid)
    wall = cpu = None
    rows = 0
    for line in proc.stdout:
        if line.startswith("DRAINED"):
            wall = float(line.split()[1]) - t0
            cpu = tree_cpu(proc.pid)
            peak = rss.stop()
        elif line.startswith("ROWS"):
            rows += int(line.split()[2])
    proc.wait()
    if wall is None:
        rss.stop()
        sys.exit(f"the Spark drain failed (exit {proc.returncode}); see {work}/spark.log")
    if rows != a.events:
        sys.exit(f"the Spark jobs wrote {rows} rows, not {a.events}")
    shutil.rmtree(out, ignore_errors=True)
    return {"wall": wall, "cpu": cpu, "rss": peak}


STAGES = ("poll", "decode", "dedup", "plugins", "arrow", "parquet", "commit")


def log_phases(path, t0):
    """Seconds from process start to the last plugin loaded and to the
    first partition assignment, from the writer's log (RFC 3339 times), and
    the thread time per stage it logs when it stops."""
    from datetime import datetime

    phases = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"(\S+Z)\s", line)
            if not m:
                continue
            try:
                at = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp() - t0
            except ValueError:
                continue
            if "loaded" in line and "plugin" in line:
                phases["plugins_loaded"] = at
            elif "assigned partitions" in line and "joined" not in phases:
                phases["joined"] = at
            elif "thread time per stage" in line:
                phases["stages"] = {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+) s", line)}
    return phases


def drain_eventsift(a, work, data_dir, n):
    """`eventsift writer --exit-at-end` from process start to exit (it exits
    once every partition is committed up to the end it read at start)."""
    wh = tempfile.mkdtemp(dir=work, prefix="wh-")
    admin = f"127.0.0.1:{a.admin_port}"
    env = dict(os.environ, EVENTSIFT_LOG="info", NO_COLOR="1")
    log = os.path.join(work, f"eventsift-{n}.log")
    t0 = time.time()
    proc = subprocess.Popen(
        [
            a.bin, "writer", "--exit-at-end", "--kafka", a.kafka, "--topic", a.topic,
            "--group", f"side-by-side-{n}-{os.getpid()}", "--plugins", a.plugins, "--data-dir", data_dir,
            "--warehouse", wh, "--admin-listen", admin,
        ]
        + a.writer_arg,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),
    )
    ready = None
    while ready is None and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://{admin}/readyz", timeout=1) as r:
                if r.status == 200:
                    ready = time.time() - t0
        except OSError:
            time.sleep(0.01)
    # CPU and peak RSS of the process, from the kernel at its exit.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"eventsift writer exited {proc.returncode}; see {log}")
    rows = int(
        subprocess.run(
            [a.bin, "query", "--warehouse", wh, "--format", "csv",
             "SELECT (SELECT COUNT(*) FROM sword_purchases) + (SELECT COUNT(*) FROM horse_purchases)"
             " + (SELECT COUNT(*) FROM guild_actions)"],
            capture_output=True, text=True, check=True,
        ).stdout.split()[-1]
    )
    if rows != a.events:
        sys.exit(f"eventsift wrote {rows} rows, not {a.events}; see {log}")
    result = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss * 1024, "ready": ready}
    result.update(log_phases(log, t0))
    shutil.rmtree(wh, ignore_errors=True)
    return result


def show_eventsift(label, m):
    st = m.get("stages", {})
    phases = "  ".join(f"{k} {m[k]:.2f} s" for k in ("plugins_loaded", "ready", "joined") if m.get(k) is not None)
    print(f"  {label}: {m['wall']:6.2f} s  cpu {m['cpu']:6.2f} s  rss {m['rss'] / 2**20:6.0f} MiB | {phases}"
          f" | " + " ".join(f"{k} {v:.2f}" for k, v in st.items()), flush=True)


# -- HTTP ---------------------------------------------------------------------


def wait_port(port):
    import socket

    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on port {port}")


def ms(v):
    for suffix, mul in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(suffix):
            return float(v[: -len(suffix)]) * mul
    return float(v)


def wrk(port, conns, secs):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", "-s", os.path.join(ROOT, "bench", "seed.lua"),
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else ""}


def http_rounds(a, work, results):
    env = dict(os.environ, KAFKA=a.kafka, TOPIC=a.topic + "-http-classic")
    classic = None if a.no_classic else subprocess.Popen(
        [os.path.join(os.path.dirname(a.classic_python), "gunicorn"), "-w", "2", "--threads", "8",
         "-b", "127.0.0.1:5096", "--log-level", "warning", "game_api:app"],
        cwd=HERE, env=env, stderr=open(os.path.join(work, "gunicorn.log"), "ab"),
    )
    api = subprocess.Popen(
        [a.bin, "api", "--listen", "127.0.0.1:5097", "--admin-listen", "127.0.0.1:0", "--plugins", a.plugins,
         "--data-dir", os.path.join(work, "api"), "--kafka", a.kafka, "--topic", a.topic + "-http-eventsift"]
        + a.api_arg,
        env=dict(os.environ, EVENTSIFT_LOG="warn"),
        stderr=open(os.path.join(work, "api.log"), "ab"),
    )
    one = None
    if a.one_producer:
        # The state before issue 19: one producer, linger.ms=5 for every
        # publish (a user-set linger turns the prompt producer off).
        cfg = os.path.join(work, "one-producer.toml")
        with open(cfg, "w") as f:
            f.write('[kafka_producer]\n"linger.ms" = "5"\n')
        one = subprocess.Popen(
            [a.bin, "api", "--config", cfg, "--listen", "127.0.0.1:5098", "--admin-listen", "127.0.0.1:0",
             "--plugins", a.plugins, "--data-dir", os.path.join(work, "api-one"), "--kafka", a.kafka,
             "--topic", a.topic + "-http-eventsift"] + a.api_arg,
            env=dict(os.environ, EVENTSIFT_LOG="warn"),
            stderr=open(os.path.join(work, "api-one.log"), "ab"),
        )
    stacks = [s for s in (("classic", 5096, classic), ("eventsift", 5097, api), ("one-producer", 5098, one)) if s[2]]
    try:
        for _, port, _ in stacks:
            wait_port(port)
            wrk(port, 64, 3)  # warm-up: connection pools, the broker's JIT
        for conns in a.conns:
            for r in range(a.http_rounds):
                for name, port, proc in stacks:
                    cpu0 = tree_cpu(proc.pid)
                    m = wrk(port, conns, a.http_seconds)
                    m["server_cores"] = (tree_cpu(proc.pid) - cpu0) / a.http_seconds
                    results[f"http_{conns}_{name}"].append(m)
                    print(f"  http c={conns} round {r + 1} {name:9}: {m['rps']:8.0f} req/s  p50 {m['p50']:.2f} ms"
                          f"  p99 {m['p99']:.2f} ms  server {m['server_cores']:.2f} cores"
                          + (f"  NON-2XX {m['non2xx']}" if m["non2xx"] else ""), flush=True)
    finally:
        for _, _, proc in stacks:
            stop(proc)


# -- the table ----------------------------------------------------------------


def med(xs, key):
    return statistics.median(x[key] for x in xs) if xs else float("nan")


def table(a, res):
    n = a.events
    rows = ["| | classic stack | eventsift | ratio |", "|---|---|---|---|"]
    if res["warm"]:
        c, w, cold = res["classic"], res["warm"], res["cold"]
        cw, ew, kw = med(c, "wall"), med(w, "wall"), med(cold, "wall")
        rows.append(
            f"| drain {n:,} events, wall (median of {len(c)}) | {cw:.2f} s ({n / cw / 1e3:.1f} k events/s) "
            f"| {ew:.2f} s ({n / ew / 1e3:.0f} k events/s); cold plugin cache {kw:.2f} s | {cw / ew:.1f}x (cold {cw / kw:.1f}x) |"
        )
        cc, ec, kc = med(c, "cpu") / n * 1e6, med(w, "cpu") / n * 1e6, med(cold, "cpu") / n * 1e6
        rows.append(
            f"| CPU per event for the drain | {cc:.1f} µs | {ec:.2f} µs; cold {kc:.2f} µs | {cc / ec:.1f}x (cold {cc / kc:.1f}x) |"
        )
        cr, er = med(c, "rss") / 2**30, med(w, "rss") / 2**30
        rows.append(f"| peak RSS during the drain (process tree) | {cr:.2f} GiB | {er * 1024:.0f} MiB | {cr / er:.1f}x |")
        rows.append(f"| eventsift: process start to ready (/readyz) | | {med(w, 'ready') * 1e3:.0f} ms | |")
    for conns in a.conns:
        c, e = res.get(f"http_{conns}_classic"), res.get(f"http_{conns}_eventsift")
        if not e:
            continue
        cr, er = med(c, "rps"), med(e, "rps")
        rows.append(
            f"| HTTP, seed route mix, {conns} connections | {cr / 1e3:.1f} k req/s (p99 {med(c, 'p99'):.1f} ms) "
            f"| {er / 1e3:.1f} k req/s (p99 {med(e, 'p99'):.1f} ms, p50 {med(e, 'p50'):.1f} ms) | {er / cr:.1f}x |"
        )
        o = res.get(f"http_{conns}_one-producer")
        if o:
            rows.append(
                f"| (before: one producer, linger 5 ms), {conns} connections | "
                f"| {med(o, 'rps') / 1e3:.1f} k req/s (p99 {med(o, 'p99'):.1f} ms, p50 {med(o, 'p50'):.1f} ms) "
                f"| after/before {er / med(o, 'rps'):.2f} |"
            )
    return "\n".join(rows)


def breakdown(res):
    lines = []
    for kind in ("warm", "cold"):
        runs = [m for m in res[kind] if "stages" in m]
        if not runs:
            continue
        phases = []
        for k, label in (("plugins_loaded", "plugins loaded"), ("ready", "ready"), ("joined", "group joined")):
            v = [m[k] for m in runs if m.get(k) is not None]
            if v:
                phases.append(f"{label} {statistics.median(v):.2f} s")
        phases.append(f"all committed {med(runs, 'wall'):.2f} s")
        stages = ", ".join(
            f"{k} {statistics.median(m['stages'][k] for m in runs):.2f} s" for k in STAGES
        )
        lines.append(f"eventsift {kind} drain, from process start: " + ", ".join(phases))
        lines.append(f"  thread time per stage (medians): {stages}")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True, help="the eventsift binary")
    p.add_argument("--plugins", required=True, help="the bundled plugins' folder")
    p.add_argument("--classic-python", required=True, help="python of the venv with pyspark, flask, gunicorn")
    p.add_argument("--kafka", default="127.0.0.1:9092")
    p.add_argument("--topic", required=True, help="a topic pre-filled with --events envelopes")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--rounds", type=int, default=3, help="drain rounds")
    p.add_argument("--http-rounds", type=int, default=3)
    p.add_argument("--http-seconds", type=int, default=10)
    p.add_argument("--conns", default="64,256,512", help="HTTP connection counts")
    p.add_argument("--no-drain", action="store_true")
    p.add_argument("--no-http", action="store_true")
    p.add_argument("--no-classic", action="store_true", help="eventsift alone (a quick look)")
    p.add_argument("--admin-port", type=int, default=5195)
    p.add_argument("--writer-arg", action="append", default=[], help="an extra flag for `eventsift writer`")
    p.add_argument("--api-arg", action="append", default=[], help="an extra flag for `eventsift api`")
    p.add_argument("--one-producer", action="store_true",
                   help="HTTP: also `eventsift api` with one producer at linger.ms=5 (the state before issue 19)")
    p.add_argument("--json", help="write every measurement here")
    a = p.parse_args()
    a.conns = [int(c) for c in a.conns.split(",") if c]

    work = tempfile.mkdtemp(prefix="side-by-side-")
    res = {"classic": [], "warm": [], "cold": []}
    for conns in a.conns:
        for stack in ("classic", "eventsift", "one-producer"):
            res[f"http_{conns}_{stack}"] = []
    print(f"work folder {work} (logs)", flush=True)
    try:
        if not a.no_drain:
            kept = os.path.join(work, "data-kept")
            # The kept cache's first fill, not measured.
            drain_eventsift(a, work, kept, "fill")
            for r in range(a.rounds):
                if not a.no_classic:
                    m = drain_classic(a, work)
                    res["classic"].append(m)
                    print(f"  drain round {r + 1} classic  : {m['wall']:6.2f} s  cpu {m['cpu']:6.1f} s"
                          f"  rss {m['rss'] / 2**20:6.0f} MiB", flush=True)
                m = drain_eventsift(a, work, kept, f"{r}-warm")
                res["warm"].append(m)
                show_eventsift(f"drain round {r + 1} eventsift", m)
                cold = tempfile.mkdtemp(dir=work, prefix="data-cold-")
                m = drain_eventsift(a, work, cold, f"{r}-cold")
                shutil.rmtree(cold, ignore_errors=True)
                res["cold"].append(m)
                show_eventsift(f"drain round {r + 1} eventsift, cold plugin cache", m)
        if not a.no_http:
            http_rounds(a, work, res)
        print()
        print(table(a, res))
        print()
        print(breakdown(res))
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"events": a.events, "results": res}, f, indent=1)
    except BaseException:
        print(f"(logs kept in {work})", file=sys.stderr)
        raise
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
