# syntax=docker/dockerfile:1
# callpool's container image: built in rust:1-bookworm, run in debian:bookworm-slim as an unprivileged user.
#
#   docker build -t callpool .
#   docker run -p 8080:8080 -v callpool-data:/var/lib/callpool -e CALLPOOL_ADMIN_TOKEN=... callpool
#
# It runs /etc/callpool/callpool.toml, the Debian package's configuration (deploy/debian/callpool.toml: no site
# yet, the embedded store in /var/lib/callpool); mount your own there. CALLPOOL_LISTEN is 0.0.0.0:8080 so that
# the port can be published; the health check asks 127.0.0.1:8080/readyz with the binary itself (no curl here).
# A cluster: deploy/compose.yaml.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin callpool \
    && install -D -m 0755 target/release/callpool /out/callpool \
    && strip --strip-debug /out/callpool

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 callpool \
    && useradd --system --uid 10001 --gid callpool --home-dir /var/lib/callpool --no-create-home \
        --shell /usr/sbin/nologin callpool \
    && install -d -o callpool -g callpool -m 0750 /var/lib/callpool
COPY --from=build /out/callpool /usr/bin/callpool
COPY --chmod=0644 deploy/debian/callpool.toml /etc/callpool/callpool.toml
ENV CALLPOOL_LISTEN=0.0.0.0:8080
WORKDIR /var/lib/callpool
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/bin/callpool", "healthcheck", "--url", "http://127.0.0.1:8080/readyz", "--timeout", "4s"]
ENTRYPOINT ["/usr/bin/callpool", "--config", "/etc/callpool/callpool.toml"]
CMD ["serve"]
