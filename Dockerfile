# Multi-stage build: compile in the Rust image, run in a slim one as a
# non-root user. (No Docker engine runs on the project's build machines, so
# the image is not built by CI; a test checks the config it runs with.)
#
# The image listens on 0.0.0.0, so it does not carry the shipped
# hookledger.toml, whose admin token and secrets are public development
# values (the server refuses them on any address but loopback). Its config,
# docker/hookledger.toml, takes every credential from the environment:
#   docker run -e HOOKLEDGER_ADMIN_TOKEN=… -e STRIPE_WEBHOOK_SECRET=… \
#     -e GITHUB_WEBHOOK_SECRET=… -e SHOPIFY_WEBHOOK_SECRET=… \
#     -e ACUITY_API_KEY=… -e STANDARD_WEBHOOK_SECRET=whsec_… \
#     -e BILLING_SECRET=… -p 8080:8080 hookledger
# and a variable that is not set stops start-up with an error naming it.
# Or mount a config of your own at /etc/hookledger/hookledger.toml.
FROM rust:1-bookworm AS build
WORKDIR /src
# hookledger.toml: compiled in, to recognise its development values.
COPY Cargo.toml Cargo.lock hookledger.toml ./
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
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
ENTRYPOINT ["/usr/local/bin/hookledger"]
CMD ["serve"]
