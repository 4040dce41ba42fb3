#!/usr/bin/env bash
# hookledger load benchmark: builds the release binary, makes sure wrk and
# PostgreSQL are there (and nginx, the local receiver of --deliveries), and
# runs bench/run.py (all arguments pass through). Full run as reported in the
# README:
#   bench/run.sh --scale-rows 10000000 --backlog 100000 --ack-latency
#   bench/run.sh --modes "" --deliveries 100000 --delivery-concurrency 64
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if [[ " $* " == *" --deliveries"* ]] && ! command -v nginx >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nginx-light
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
cargo build --release --quiet
exec python3 bench/run.py "$@"
