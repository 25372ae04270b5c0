# syntax=docker/dockerfile:1
# Build: docker build -t imlogin .    Run: docker compose up (see docker-compose.yml)

FROM rust:1-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole workspace (cargo reads every member's manifest), then one cached build of the server alone: the
# registry and target caches survive between builds, so only what changed is compiled again.
COPY Cargo.toml Cargo.lock ./
COPY bench bench
COPY config config
COPY migrations migrations
COPY src src
# The console and the demo: their pages and committed bundles are embedded by the build, no Node needed.
COPY web web
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p imlogin --bin imlogin \
 && cp target/release/imlogin /usr/local/bin/imlogin

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/imlogin --create-home imlogin
COPY --from=build /usr/local/bin/imlogin /usr/local/bin/imlogin
USER imlogin
WORKDIR /var/lib/imlogin
ENV IMLOGIN__SERVER__LISTEN=0.0.0.0:8080 \
    IMLOGIN__SERVER__METRICS_LISTEN=0.0.0.0:9090 \
    IMLOGIN__LOG__FORMAT=json
EXPOSE 8080 9090
VOLUME ["/var/lib/imlogin"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["imlogin"]
CMD ["serve"]
