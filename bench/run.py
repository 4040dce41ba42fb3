#!/usr/bin/env python3
"""hookledger load benchmark: one command, both backends, baselines in the same run.

Builds nothing itself (run.sh does); starts the release binary per backend with
a benchmark config, drives it with wrk, and prints requests/s, latency
percentiles, errors, server CPU per webhook and peak RSS, each checked against
the ledger afterwards. See bench/README.md.
"""
import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("HOOKLEDGER_BIN", os.path.join(ROOT, "target", "release", "hookledger"))
PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PORT = int(os.environ.get("BENCH_PORT", "18080"))
UPSTREAM_PORT = PORT + 1
TOKEN = "bench-admin-token"
BASE = f"http://127.0.0.1:{PORT}"
TICKS = os.sysconf("SC_CLK_TCK")

CONFIG = """
[server]
bind = "127.0.0.1:{port}"
database_url = "{db}"
admin_token = "{token}"
workers = {workers}
max_in_flight = 8192
{server_extra}

[processing]
lease_secs = 60
max_attempts = 8
poll_interval_ms = 100

[sources.bench]
preset = "generic"
verify = "off"
event_id = {{ header = "X-Request-Id" }}
object_type = {{ value = "invoice" }}
object_id = {{ pointer = "/data/object/id" }}
{bench_extra}

[sources.bench_fetch]
preset = "generic"
verify = "off"
event_id = {{ header = "X-Request-Id" }}
object_type = {{ value = "invoice" }}
object_id = {{ header = "X-Request-Id" }}
fetch.url = "http://127.0.0.1:{upstream}/v1/invoices/{{object_id}}"
fetch.timeout_secs = 5
{tail}
"""


def log(*parts):
    print(*parts, flush=True)


def http(method, path, body=None, headers=None):
    req = urllib.request.Request(BASE + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def admin(path):
    status, body = http("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, (path, status, body)
    return json.loads(body)


def received(outcome):
    """hookledger_webhooks_received_total for the bench sources."""
    _, text = http("GET", "/metrics")
    total = 0
    for line in text.decode().splitlines():
        m = re.match(r'hookledger_webhooks_received_total\{source="bench(_fetch)?",outcome="(\w+)"\} (\d+)', line)
        if m and m.group(2) == outcome:
            total += int(m.group(3))
    return total


def batches():
    """(batches, rows, seconds) committed so far by the ledger writers."""
    _, text = http("GET", "/metrics")
    values = {}
    for line in text.decode().splitlines():
        m = re.match(r"hookledger_ledger_batch_(rows_sum|rows_count|duration_seconds_sum) (\S+)", line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return (values.get("rows_count", 0.0), values.get("rows_sum", 0.0),
            values.get("duration_seconds_sum", 0.0))


class Server:
    def __init__(self, db_url, workers=0, server_extra="", bench_extra="", tail=""):
        """`bench_extra`: more keys for [sources.bench]; `tail`: more tables."""
        try:
            http("GET", "/healthz")
            sys.exit(f"something already listens on port {PORT}: stop it or set BENCH_PORT")
        except OSError:
            pass
        self.dir = tempfile.mkdtemp(prefix="hookledger-bench-")
        cfg = os.path.join(self.dir, "bench.toml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(port=PORT, db=db_url, token=TOKEN, workers=workers,
                                  server_extra=server_extra, upstream=UPSTREAM_PORT,
                                  bench_extra=bench_extra, tail=tail))
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        env = dict(os.environ, RUST_LOG="warn")
        for var in ("DATABASE_URL", "HOOKLEDGER_BIND", "HOOKLEDGER_ADMIN_TOKEN"):
            env.pop(var, None)
        self.proc = subprocess.Popen([BIN, "--config", cfg, "serve"], stdout=self.log,
                                     stderr=self.log, env=env)
        for _ in range(300):
            try:
                if http("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        sys.exit(f"server did not start; see {self.log.name}:\n" + open(self.log.name).read()[-2000:])

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def peak_rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def seed_pool(pool):
    """Delivers the redelivery pool once, so later copies are duplicates."""
    body = b'{"data":{"object":{"id":"in_seed"}}}'
    for i in range(pool):
        status, _ = http("POST", "/webhooks/bench", body,
                         {"Content-Type": "application/json", "X-Request-Id": f"seed-{i}"})
        assert status in (200, 202), status


def wrk(mode, conns, seconds, run_id, source="bench"):
    env = dict(os.environ, MODE=mode, RUN_ID=run_id, POOL="1000", SOURCE=source)
    script = os.path.join(ROOT, "bench", "wrk.lua")
    threads = "2"
    out = subprocess.run(["wrk", "-t", threads, "-c", str(conns), "-d", f"{seconds}s", "--timeout", "10s",
                          "-s", script, BASE + "/"], env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"RESULT (.*)", out)
    if not m:
        sys.exit("wrk printed no RESULT line:\n" + out)
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def measure(server, mode, conns, seconds, label, source="bench", repeat=1):
    """The run with the median rate of `repeat` runs (the ledger check must
    hold for every one of them)."""
    runs = [measure_once(server, mode, conns, seconds, label, source) for _ in range(repeat)]
    runs.sort(key=lambda r: r["rps"])
    median = dict(runs[len(runs) // 2])
    median["ledger_ok"] = all(r["ledger_ok"] for r in runs)
    return median


def measure_once(server, mode, conns, seconds, label, source="bench"):
    checkpoint()
    before_rows = admin("/admin/stats")["total"]
    before_acc, before_dup = received("accepted"), received("duplicate")
    cpu0 = server.cpu_seconds()
    batches0 = batches()
    r = wrk(mode, conns, seconds, f"{label}-{time.time_ns()}", source)
    cpu = server.cpu_seconds() - cpu0
    # Requests wrk gave up on at the end may still be finishing: wait for the
    # counters to settle, then read the answers before the rows (a row is
    # committed before its 202 is counted, so rows >= accepted unless lost).
    settled = None
    while True:
        now = (received("accepted"), received("duplicate"))
        if now == settled:
            break
        settled = now
        time.sleep(0.3)
    accepted, duplicate = settled[0] - before_acc, settled[1] - before_dup
    rows = admin("/admin/stats")["total"] - before_rows
    n_batches, batch_rows, batch_secs = (b - a for a, b in zip(batches0, batches()))
    ok = r["requests"] - r["non2xx"]
    rps = r["requests"] / (r["duration_us"] / 1e6)
    # Every 202 must stand in the ledger, and every 2xx is a 202 or a 200.
    ledger_ok = rows >= accepted and accepted + duplicate >= ok
    return {
        "label": label, "mode": mode, "conns": conns, "rps": rps, "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000, "p999_ms": r["p999_us"] / 1000,
        "errors": r["non2xx"] + r["errors"], "cpu_us": cpu / max(r["requests"], 1) * 1e6,
        "ok": ok, "accepted": accepted, "rows": rows, "ledger_ok": ledger_ok,
        "batch_rows": batch_rows / max(n_batches, 1), "batch_ms": batch_secs / max(n_batches, 1) * 1000,
    }


def fsync_probe(seconds=3.0):
    """The disk's own commit latency: fdatasync of 16 KiB appends, as a WAL
    commit does. Its tail bounds every p99 below, whatever the server does."""
    fd, path = tempfile.mkstemp(prefix="hookledger-bench-fsync-")
    times = []
    end = time.time() + seconds
    try:
        while time.time() < end:
            os.write(fd, b"x" * 16384)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(len(times) * q))] * 1000
    return (f"disk: fdatasync of a 16 KiB append, {len(times)} calls in {seconds:.0f}s: median {pick(0.5):.2f} ms, "
            f"p99 {pick(0.99):.2f} ms, p99.9 {pick(0.999):.2f} ms, max {times[-1] * 1000:.1f} ms")


def checkpoint():
    """Flushes PostgreSQL's dirty pages now, so that writing out one run's
    pages does not land in the next run's figures."""
    psql(PG_ADMIN, "CHECKPOINT")


def psql(db_url, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", db_url, "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def fresh_pg(name):
    psql(PG_ADMIN, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(PG_ADMIN, f"CREATE DATABASE {name}")
    return re.sub(r"/[^/]*$", f"/{name}", PG_ADMIN)


def pgbench_baseline(conns, seconds):
    url = fresh_pg("hookledger_bench_pgbench")
    psql(url, "CREATE TABLE t (k TEXT PRIMARY KEY, payload TEXT NOT NULL)")
    checkpoint()
    script = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
    script.write("\\set k random(1, 2000000000)\n"
                 "INSERT INTO t (k, payload) VALUES ('id:' || :k, repeat('x', 600)) ON CONFLICT DO NOTHING;\n")
    script.close()
    out = subprocess.run(["pgbench", "-n", "-c", str(conns), "-j", "2", "-T", str(seconds), "-f", script.name, url],
                         capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    psql(PG_ADMIN, "DROP DATABASE IF EXISTS hookledger_bench_pgbench WITH (FORCE)")
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def preload(db_url, rows, status="done", payload="{}", completions=0):
    """Fills the ledger fast with `rows` events (status done unless told),
    each with `payload` (JSON text without single quotes)."""
    assert "'" not in payload
    cols = ("source, dedup_key, strategy, status, provider_event_id, action, object_type, object_id, "
            "event_time, payload, body_hash, received_at, next_attempt_at, processed_at, completions")
    done_at = "0" if status == "done" else "NULL"
    if db_url.startswith("sqlite"):
        path = db_url[len("sqlite://"):]
        con = sqlite3.connect(path)
        con.execute("PRAGMA synchronous=OFF")
        con.execute(f"INSERT INTO events ({cols}) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                    f"WHERE x < {rows}) SELECT 'bench', 'id:pre-' || x, 'event_id', '{status}', 'pre-' || x, NULL, "
                    f"'invoice', 'obj-' || (x % 10000), 0, '{payload}', 'h', 0, 0, {done_at}, {completions} FROM c")
        con.commit()
        con.close()
    else:
        psql(db_url, f"INSERT INTO events ({cols}) SELECT 'bench', 'id:pre-' || x, 'event_id', '{status}', "
                     f"'pre-' || x, NULL, 'invoice', 'obj-' || (x % 10000), 0, '{payload}', 'h', 0, 0, {done_at}, "
                     f"{completions} "
                     f"FROM generate_series(1, {rows}) AS x")
        psql(db_url, "VACUUM ANALYZE events")


def drain_backlog(events):
    """Events per second for 64 workers draining `events` preloaded pending
    events (no fetch), on a fresh PostgreSQL database; start-up included."""
    url = backend_url("postgres", "backlog")
    migrate(url)
    preload(url, events, status="pending")
    checkpoint()
    t = time.time()
    server = Server(url, workers=64)
    while True:
        s = admin("/admin/stats")["by_status"]
        if s["pending"] + s["processing"] + s["failed"] == 0:
            break
        time.sleep(0.2)
    elapsed = time.time() - t
    server.stop()
    drop_db(url)
    return events / elapsed


def drop_db(url):
    """Drops a database the bench made, once its server has stopped (a 10 M-row
    one would keep autovacuum and the disk busy under the runs that follow)."""
    if url.startswith("sqlite"):
        shutil.rmtree(os.path.dirname(url[len("sqlite://"):]), ignore_errors=True)
    else:
        psql(PG_ADMIN, f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def backend_url(backend, tag):
    if backend == "sqlite":
        d = tempfile.mkdtemp(prefix="hookledger-bench-db-")
        return f"sqlite://{d}/ledger.db"
    return fresh_pg(f"hookledger_bench_{tag}")


def migrate(db_url):
    env = dict(os.environ, DATABASE_URL=db_url, HOOKLEDGER_ADMIN_TOKEN=TOKEN)
    subprocess.run([BIN, "--config", os.path.join(ROOT, "hookledger.toml"), "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL)


class SlowUpstream(BaseHTTPRequestHandler):
    delay = 1.0

    def do_GET(self):
        time.sleep(self.delay)
        body = json.dumps({"id": self.path.rsplit("/", 1)[-1], "status": "paid"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def row(r, baseline=None):
    ratio = f"{r['rps'] / baseline:5.2f}x" if baseline else "    -"
    check = "ok" if r["ledger_ok"] else "LOST"
    return (f"{r['label']:<10} {r['mode']:<9} {r['conns']:>4} {r['rps']:>9.0f} {ratio:>7} {r['p50_ms']:>7.2f} "
            f"{r['p99_ms']:>7.2f} {r['p999_ms']:>7.2f} {r['errors']:>6} {r['cpu_us']:>7.1f} {r['batch_rows']:>6.1f} "
            f"{r['batch_ms']:>6.2f}  {check}")


HEADER = (f"{'backend':<10} {'mode':<9} {'conn':>4} {'req/s':>9} {'vs pg':>7} {'p50ms':>7} {'p99ms':>7} "
          f"{'p999ms':>7} {'errors':>6} {'cpu_us':>7} {'rows/b':>6} {'b_ms':>6}  ledger")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=10, help="length of each load run")
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--conns", default="64,256")
    ap.add_argument("--modes", default="unique,redeliver,mix")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is printed")
    ap.add_argument("--scale-rows", type=int, default=0, help="also measure with this many rows preloaded")
    ap.add_argument("--backlog", type=int, default=0, help="also measure draining this many events (PostgreSQL)")
    ap.add_argument("--ack-latency", action="store_true", help="also compare ingest p99 with a 1 s upstream")
    ap.add_argument("--deliveries", type=int, default=0,
                    help="also drain this many events to a local HTTP destination (bench/deliveries.py)")
    ap.add_argument("--delivery-concurrency", type=int, default=8,
                    help="the destination's `concurrency` for --deliveries (hookledger's default: 8)")
    ap.add_argument("--delivery-timeout", type=int, default=900,
                    help="stop a --deliveries drain after this many seconds and report its rate so far")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    log(f"machine: {os.cpu_count()} cores, {open('/proc/meminfo').readline().split()[1]} kB; "
        f"load generator wrk -t2 on the same cores; {args.seconds}s per run")

    log(fsync_probe())
    checkpoint()
    runs = sorted(pgbench_baseline(64, args.seconds) for _ in range(args.repeat))
    baseline = runs[len(runs) // 2]
    log(f"baseline: pgbench one-row INSERT ... ON CONFLICT DO NOTHING, 64 clients: {baseline:.0f} tps"
        + (f" (median of {' '.join(f'{r:.0f}' for r in runs)})" if args.repeat > 1 else "") + "\n")
    results = []
    # `--modes ""` skips the main matrix (to run only the extras below).
    for backend in args.backends.split(",") if args.modes else []:
        if not results:
            log(HEADER)
        url = backend_url(backend, "main")
        server = Server(url)
        seed_pool(1000)
        for conns in map(int, args.conns.split(",")):
            for mode in args.modes.split(","):
                r = measure(server, mode, conns, args.seconds, backend, repeat=args.repeat)
                results.append(r)
                log(row(r, baseline))
        log(f"{backend}: peak RSS {server.peak_rss_mb():.0f} MB")
        server.stop()
        drop_db(url)

    if args.scale_rows:
        for backend in args.backends.split(","):
            url = backend_url(backend, "scale")
            migrate(url)
            empty = Server(url)
            r0 = measure(empty, "unique", 64, args.seconds, f"{backend}", repeat=args.repeat)
            empty.stop()
            t = time.time()
            preload(url, args.scale_rows)
            log(f"{backend}: preloaded {args.scale_rows} rows in {time.time() - t:.0f}s")
            full = Server(url)
            r1 = measure(full, "unique", 64, args.seconds, f"{backend}+{args.scale_rows // 1_000_000}M",
                         repeat=args.repeat)
            log(row(r0, baseline))
            log(row(r1, baseline))
            log(f"{backend}: unique rate with {args.scale_rows} rows / empty = {r1['rps'] / r0['rps']:.2f}; "
                f"peak RSS {full.peak_rss_mb():.0f} MB")
            full.stop()
            drop_db(url)

    if args.backlog:
        rates = sorted(drain_backlog(args.backlog) for _ in range(args.repeat))
        log(f"backlog: {args.backlog} events drained at {rates[len(rates) // 2]:.0f} events/s "
            + (f"(median of {' '.join(f'{r:.0f}' for r in rates)}; " if args.repeat > 1 else "(")
            + "workers=64, no fetch, PostgreSQL; includes start-up)")

    if args.ack_latency:
        upstream = ThreadingHTTPServer(("127.0.0.1", UPSTREAM_PORT), SlowUpstream)
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        for backend in args.backends.split(","):
            url = backend_url(backend, "ack")
            server = Server(url, workers=32)
            plain = measure(server, "unique", 16, args.seconds, f"{backend}", "bench")
            slow = measure(server, "unique", 16, args.seconds, f"{backend}", "bench_fetch")
            log(f"ack latency ({backend}, 16 conns): no fetch p99 {plain['p99_ms']:.2f} ms; "
                f"with a 1 s upstream (32 workers busy fetching) p99 {slow['p99_ms']:.2f} ms; "
                f"ratio {slow['p99_ms'] / plain['p99_ms']:.2f}")
            server.stop()
            drop_db(url)
        upstream.shutdown()

    if args.deliveries:
        # deliveries.py imports this module as `run`: hand it this very one
        # rather than a second copy of it.
        sys.modules.setdefault("run", sys.modules[__name__])
        import deliveries
        deliveries.run(args)

    lost = [r for r in results if not r["ledger_ok"]]
    if lost:
        sys.exit(f"ledger check failed for {len(lost)} runs")


if __name__ == "__main__":
    main()
