# Multi-stage build: compile in the Rust image, run in a slim one as a
# non-root user. (No Docker engine runs on the project's build machines, so
# this file is not exercised by CI; see the README.)
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
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
COPY hookledger.toml /etc/hookledger/hookledger.toml
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
