# Multi-stage build: compile in the Rust image, run in a slim one as a
# non-root user. (No Docker engine runs on the project's build machines, so
# the image is not built by CI; a test checks the config it runs with and
# the lines below that it relies on.)
#
# The image listens on 0.0.0.0, so it does not carry the shipped
# hookledger.toml, whose admin token and secrets are public development
# values (the server refuses them on any address but loopback); nor the
# development Ed25519 signing key beside the fixtures (.dockerignore). Its
# config, docker/hookledger.toml, takes every credential from the
# environment:
#   docker run -e HOOKLEDGER_ADMIN_TOKEN=… -e STRIPE_WEBHOOK_SECRET=… \
#     -e GITHUB_WEBHOOK_SECRET=… -e SHOPIFY_WEBHOOK_SECRET=… \
#     -e ACUITY_API_KEY=… -e STANDARD_WEBHOOK_SECRET=whsec_… \
#     -e BILLING_SECRET=… -p 8080:8080 hookledger
# and a variable that is not set stops start-up with an error naming it.
# Or mount a config of your own at /etc/hookledger/hookledger.toml.
#
# Stopping: `docker stop` sends SIGTERM (STOPSIGNAL below), and hookledger
# then finishes in-flight requests and workers for up to
# server.shutdown_grace_secs before it exits. Docker kills the container
# after its stop timeout, 10 s unless told otherwise, so the image's config
# sets shutdown_grace_secs = 8. Raise both together, the stop timeout a few
# seconds above the grace: e.g. shutdown_grace_secs = 30 with
# `docker run --stop-timeout 35` (Compose: `stop_grace_period: 35s`). A kill
# loses no acknowledged webhook (every 2xx was committed first); it only
# cuts requests in flight, which their providers retry.
FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: built against stub targets,
# so that a change to hookledger's sources rebuilds only hookledger.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
# hookledger.toml: compiled in, to recognise its development values.
COPY hookledger.toml ./
COPY migrations ./migrations
COPY src ./src
# COPY keeps the files' own times, which can be older than the stub build:
# touch them so cargo sees hookledger as changed and builds the real one.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked

FROM debian:bookworm-slim AS runtime
# curl: for the HEALTHCHECK only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/hookledger hookledger \
 && mkdir -p /var/lib/hookledger /etc/hookledger \
 && chown hookledger /var/lib/hookledger
COPY --from=build /src/target/release/hookledger /usr/local/bin/hookledger
COPY docker/hookledger.toml /etc/hookledger/hookledger.toml
COPY fixtures /usr/share/hookledger/fixtures
ENV HOOKLEDGER_CONFIG=/etc/hookledger/hookledger.toml \
    HOOKLEDGER_BIND=0.0.0.0:8080 \
    DATABASE_URL=sqlite:///var/lib/hookledger/hookledger.db
VOLUME ["/var/lib/hookledger"]
USER hookledger
WORKDIR /var/lib/hookledger
EXPOSE 8080
# /healthz answers while the process is up (it does not touch the database;
# /readyz does). The port is HOOKLEDGER_BIND's: change both together.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/hookledger"]
CMD ["serve"]
