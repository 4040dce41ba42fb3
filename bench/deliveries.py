"""Delivery benchmark (`run.py --deliveries N`): per backend, the rate at which
processed events reach an HTTP destination next to the processing drain rate
without one, the relay's own rate, and ingest p99 with and without deliveries
running — all in one run, so the ratios compare like with like. See
bench/README.md ("Deliveries").

The destination is a local nginx answering `204` at once (its own rate is
measured first, so it is known not to be the limit); hookledger signs every
delivery (Standard Webhooks, a `whsec_` secret), as a real destination would.
"""
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

import run as bench

RECEIVER_PORT = bench.PORT + 2
# Signing is the realistic cost; the key itself is a bench value.
SINK_SECRET = "whsec_aG9va2xlZGdlci1iZW5jaC1zaW5rLWtleQ=="
WORKERS = 64
# The 600-byte event of wrk.lua, as the preloaded events' payload.
PAYLOAD = ('{"id":"evt_bench","object":"event","type":"invoice.paid","created":1764170000,'
           '"data":{"object":{"id":"in_1QbENCH","object":"invoice","amount_due":2000,"amount_paid":2000,'
           '"currency":"usd","customer":"cus_RbENCHmark","status":"paid","lines":{"object":"list","data":[]},'
           '"metadata":{"order_id":"6735","plan":"pro"},"hosted_invoice_url":"https://invoice.example/i/abc",'
           '"period_start":1764170000,"period_end":1766762000,"subtotal":2000,"total":2000}},'
           '"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null}}')
DESTINATION = """
[destinations.sink]
kind = "http"
url = "http://127.0.0.1:{port}/sink"
secret = "{secret}"
concurrency = {concurrency}
"""
DELIVER = 'deliver = [{ to = "sink" }]'
NGINX = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        location = /sink {{ return 204; }}
        location = /status {{ stub_status; }}
    }}
}}
"""


def log(*parts):
    print(*parts, flush=True)


def progress(*parts):
    print(*parts, file=sys.stderr, flush=True)


class Receiver:
    """nginx answering 204 to `POST /sink`, in its own temp dir."""

    def __init__(self):
        if not shutil.which("nginx"):
            sys.exit("nginx is not installed (apt-get install nginx-light)")
        self.dir = tempfile.mkdtemp(prefix="hookledger-bench-sink-")
        os.chmod(self.dir, 0o755)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX.format(dir=self.dir, port=RECEIVER_PORT))
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", self.dir], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr.log"), "w"))
        for _ in range(100):
            try:
                self.requests()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        sys.exit("nginx did not start")

    def requests(self):
        """Requests nginx has answered so far (stub_status; counts its own)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{RECEIVER_PORT}/status", timeout=5) as r:
            return int(r.read().decode().split("\n")[2].split()[2])

    def rate_alone(self, conns, seconds=3):
        """What the receiver answers on its own: wrk posting 1 KiB bodies."""
        script = os.path.join(self.dir, "post.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\nwrk.body = string.rep("x", 1024)\n'
                    'wrk.headers["Content-Type"] = "application/json"\n')
        out = subprocess.run(["wrk", "-t", "2", "-c", str(conns), "-d", f"{seconds}s", "-s", script,
                              f"http://127.0.0.1:{RECEIVER_PORT}/sink"],
                             capture_output=True, text=True, check=True).stdout
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def counters():
    """(events done, deliveries delivered, attempts not delivered) from /metrics."""
    _, text = bench.http("GET", "/metrics")
    done = delivered = other = 0
    for line in text.decode().splitlines():
        m = re.match(r'hookledger_events_processed_total\{source="bench",result="(\w+)"\} (\d+)', line)
        if m:
            done += int(m.group(2)) if m.group(1) == "done" else 0
            other += int(m.group(2)) if m.group(1) != "done" else 0
        m = re.match(r'hookledger_deliveries_total\{destination="sink",result="(\w+)"\} (\d+)', line)
        if m:
            delivered += int(m.group(2)) if m.group(1) == "delivered" else 0
            other += int(m.group(2)) if m.group(1) != "delivered" else 0
    return done, delivered, other


def query(db_url, sql):
    """Rows of a read-only query, the server still running."""
    if db_url.startswith("sqlite"):
        con = sqlite3.connect(f"file:{db_url[len('sqlite://'):]}?mode=ro", uri=True, timeout=30)
        try:
            return [tuple(r) for r in con.execute(sql).fetchall()]
        finally:
            con.close()
    out = subprocess.run(["psql", "-Atc", sql, db_url], capture_output=True, text=True, check=True).stdout
    return [tuple(line.split("|")) for line in out.splitlines() if line]


def preload_deliveries(db_url, rows):
    """`rows` done events, each with one pending delivery to `sink` whose body
    is an envelope like the outbox writes (~1.4 KiB): the relay's work alone."""
    bench.preload(db_url, rows, status="done", payload=PAYLOAD, completions=1)
    envelope = ("'{\"type\":null,\"timestamp\":\"2026-01-01T00:00:00.000Z\",\"data\":{\"id\":\"hl_' || id || "
                "'\",\"ledger_id\":' || id || ',\"replay\":0,\"source\":\"bench\",\"provider_event_id\":\"' || "
                "provider_event_id || '\",\"action\":null,\"object_type\":\"invoice\",\"object_id\":\"' || "
                "object_id || '\",\"event_time\":\"1970-01-01T00:00:00.000Z\",\"received_at\":"
                "\"1970-01-01T00:00:00.000Z\",\"object\":' || payload || ',\"payload\":' || payload || '}}'")
    sql = ("INSERT INTO deliveries (event_id, destination, replay, source, action, object_type, object_id, "
           f"status, body, next_attempt_at, created_at) SELECT id, 'sink', 0, source, action, object_type, "
           f"object_id, 'pending', {envelope}, 0, 0 FROM events ORDER BY id")
    if db_url.startswith("sqlite"):
        con = sqlite3.connect(db_url[len("sqlite://"):])
        con.execute("PRAGMA synchronous=OFF")
        con.execute(sql)
        con.commit()
        con.close()
    else:
        bench.psql(db_url, sql)
        bench.psql(db_url, "VACUUM ANALYZE deliveries")


def start(url, deliver, concurrency, workers=WORKERS):
    tail = DESTINATION.format(port=RECEIVER_PORT, secret=SINK_SECRET, concurrency=concurrency) if deliver else ""
    return bench.Server(url, workers=workers, bench_extra=DELIVER if deliver else "", tail=tail)


def drain(backend, events, deliver, concurrency, relay_only=False, timeout=900):
    """Preloads `events` pending events (or, `relay_only`, as many pending
    deliveries of done events), starts the binary and times it to "all done"
    and, with a destination, to "all delivered" (start-up included, as in
    `--backlog`). A drain still running after `timeout` s is stopped and its
    rate so far reported (`timed_out`). Checks the deliveries in the database
    afterwards: every one delivered, in one attempt."""
    url = bench.backend_url(backend, "deliveries")
    bench.migrate(url)
    if relay_only:
        preload_deliveries(url, events)
    else:
        bench.preload(url, events, status="pending", payload=PAYLOAD)
    bench.checkpoint()
    t0 = time.time()
    server = start(url, deliver, concurrency)
    done_s = 0.0 if relay_only else None
    delivered_s = None if deliver else 0.0
    last_note = t0
    timed_out = False
    while done_s is None or delivered_s is None:
        done, delivered, other = counters()
        now = time.time()
        if done_s is None and done >= events:
            done_s = now - t0
        if delivered_s is None and delivered >= events:
            delivered_s = now - t0
        if other:
            server.stop()
            sys.exit(f"{backend}: {other} attempts retried or dead ({done} done, {delivered} delivered)")
        if now - t0 > timeout:
            timed_out = True
            break
        if now - last_note >= 30:
            progress(f"  ... {backend}: {done} done, {delivered} delivered after {now - t0:.0f}s")
            last_note = now
        time.sleep(0.1)
    elapsed = time.time() - t0
    cpu = server.cpu_seconds()
    done, delivered, _ = counters()
    server.stop()
    check = "-"
    if deliver:
        # Read once the server has stopped, so the counts hold still.
        rows = query(url, "SELECT status, COUNT(*), SUM(attempts) FROM deliveries GROUP BY status")
        by_status = {r[0]: (int(r[1]), int(r[2])) for r in rows}
        delivered = by_status.get("delivered", (0, 0))[0]
        ok = by_status.get("delivered", (0, 0)) == (delivered, delivered) and (
            timed_out or by_status == {"delivered": (events, events)})
        check = "ok" if ok else f"WRONG {by_status}"
        if not ok:
            sys.exit(f"{backend}: deliveries in the database: {by_status}, expected {events} delivered once each")
    bench.drop_db(url)
    rate = lambda secs, count: (events / secs) if secs else count / elapsed
    return {"done_s": done_s, "delivered_s": delivered_s, "cpu": cpu / max(delivered if deliver else done, 1),
            "check": check, "timed_out": timed_out, "elapsed": elapsed,
            "done_rate": None if relay_only else rate(done_s, done), "rate": rate(delivered_s, delivered) if deliver else None}


def took(r, key):
    secs = r[key]
    return f"{secs:.1f}s" if secs is not None else f"NOT in {r['elapsed']:.0f}s (rate so far)"


def ingest(backend, events, deliver, backlog, concurrency, seconds):
    """Ingest at 64 connections against a fresh binary (64 workers), started
    right after a preload of `backlog` pending events, with or without the
    destination; also what got processed and delivered meanwhile."""
    url = bench.backend_url(backend, "ingest")
    bench.migrate(url)
    if backlog:
        bench.preload(url, events, status="pending", payload=PAYLOAD)
    server = start(url, deliver, concurrency)
    done0, delivered0, _ = counters()
    t = time.time()
    r = bench.measure(server, "unique", 64, seconds, backend)
    elapsed = time.time() - t
    done1, delivered1, other = counters()
    server.stop()
    bench.drop_db(url)
    r["done_rate"] = (done1 - done0) / elapsed
    r["delivered_rate"] = (delivered1 - delivered0) / elapsed
    r["other"] = other
    return r


def run(args):
    """Everything of `--deliveries N` for each backend; prints the tables."""
    n, conc = args.deliveries, args.delivery_concurrency
    receiver = Receiver()
    try:
        alone = receiver.rate_alone(conc)
        log(f"\ndeliveries: {n} events per drain, workers={WORKERS}, no fetch; destination 'sink' = nginx "
            f"`return 204` on 127.0.0.1:{RECEIVER_PORT}, signed (whsec), concurrency={conc}; "
            f"the receiver alone answers {alone:.0f} req/s (wrk, {conc} conns, 1 KiB POST)")
        summary = []
        for backend in args.backends.split(","):
            before = receiver.requests()
            base = drain(backend, n, False, conc, timeout=args.delivery_timeout)
            with_dest = drain(backend, n, True, conc, timeout=args.delivery_timeout)
            relay = drain(backend, n, True, conc, relay_only=True, timeout=args.delivery_timeout)
            # Each stub_status read counts itself.
            answered = receiver.requests() - before - 1
            base_rate, rate, relay_rate = base["done_rate"], with_dest["rate"], relay["rate"]
            log(f"{backend}: no destination: all {n} done in {took(base, 'done_s')} = {base_rate:.0f} events/s "
                f"({base['cpu'] * 1e6:.0f} us server CPU/event)")
            log(f"{backend}: with destination: all done in {took(with_dest, 'done_s')}, all delivered in "
                f"{took(with_dest, 'delivered_s')} = {rate:.0f} deliveries/s = {rate / base_rate:.2f}x the drain "
                f"without (target >= 0.8x); processing {with_dest['done_rate']:.0f} events/s = "
                f"{with_dest['done_rate'] / base_rate:.2f}x; {with_dest['cpu'] * 1e6:.0f} us server CPU/delivery; "
                f"database check {with_dest['check']}")
            log(f"{backend}: relay alone ({n} pending deliveries preloaded): all delivered in "
                f"{took(relay, 'delivered_s')} = {relay_rate:.0f} deliveries/s "
                f"({relay['cpu'] * 1e6:.0f} us server CPU/delivery); database check {relay['check']}; "
                f"the receiver answered {answered} requests")
            rows = [ingest(backend, n, False, False, conc, args.seconds),
                    ingest(backend, n, False, True, conc, args.seconds),
                    ingest(backend, n, True, True, conc, args.seconds)]
            labels = ("idle", "processing", "delivering")
            log(f"{'ingest':<11} {'req/s':>8} {'p50ms':>7} {'p99ms':>7} {'p999ms':>7} {'errors':>6} "
                f"{'done/s':>7} {'deliv/s':>7}  ledger")
            for label, r in zip(labels, rows):
                log(f"{label:<11} {r['rps']:>8.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['p999_ms']:>7.2f} "
                    f"{r['errors']:>6} {r['done_rate']:>7.0f} {r['delivered_rate']:>7.0f}  "
                    f"{'ok' if r['ledger_ok'] else 'LOST'}")
            p99 = [r["p99_ms"] for r in rows]
            log(f"{backend}: ingest p99 at 64 conns while delivering {p99[2]:.2f} ms = {p99[2] / p99[0]:.2f}x idle "
                f"({p99[0]:.2f} ms), {p99[2] / p99[1]:.2f}x processing the same backlog without a destination "
                f"({p99[1]:.2f} ms) (target <= 1.2x)\n")
            mark = lambda r: "" if not r["timed_out"] else f" (so far, {r['elapsed']:.0f} s)"
            summary.append((backend, base_rate, f"{rate:.0f}{mark(with_dest)}", rate / base_rate,
                            f"{relay_rate:.0f}{mark(relay)}", p99))
            if not all(r["ledger_ok"] for r in rows) or any(r["other"] for r in rows):
                sys.exit(f"{backend}: an ingest run lost rows or had failed attempts")
        log("| backend | drain, no destination | deliveries/s (end to end) | ratio | relay alone "
            "| ingest p99 idle / processing / delivering | ratio to idle / processing |")
        log("|---|---|---|---|---|---|---|")
        for backend, base_rate, rate, ratio, relay_rate, p99 in summary:
            log(f"| {backend} | {base_rate:.0f} events/s | {rate} | {ratio:.2f}x | {relay_rate} "
                f"| {p99[0]:.1f} / {p99[1]:.1f} / {p99[2]:.1f} ms | {p99[2] / p99[0]:.2f}x / {p99[2] / p99[1]:.2f}x |")
    finally:
        receiver.stop()
