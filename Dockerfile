# Multi-stage build of guestkit-worker.
#
# The runtime image runs as an unprivileged user (uid/gid 10001) and needs no capabilities, no
# devices and no writable root filesystem: every disk image is read in userspace, nothing is
# mounted, no external command is run. It works with
#   docker run --read-only --cap-drop ALL --security-opt no-new-privileges ...
#
# Layout inside the container (all under the data dir, the daemon's defaults):
#   /var/lib/guestkit           data dir: SQLite job store (when no database URL is given)
#   /var/lib/guestkit/cache     compiled-component cache
#   /var/lib/guestkit/handlers  handlers directory, watched for .wasm files (hot reload)
#   /var/lib/guestkit/images    image root: mount VM disk images here, read-only
#
# Build:  docker build -t guestkit-worker .
# Run:    docker run --rm -p 8080:8080 -p 9090:9090 --read-only --cap-drop ALL \
#           --security-opt no-new-privileges -v "$PWD/images:/var/lib/guestkit/images:ro" \
#           guestkit-worker
# Several workers on one queue: add -e GUESTKIT_DATABASE_URL=postgres://user:pass@host/db
# (see examples/docker-compose.yml and examples/k8s/).

# The tag matches rust-toolchain.toml, so rustup finds the pinned toolchain already installed.
FROM rust:1.95.0-bookworm AS build
# The built-in handler components (handlers-wasm/) are built by runtime/build.rs for
# wasm32-wasip2 and embedded in the binary.
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
# BuildKit cache mounts keep the crate registry and the target dir (host and wasm builds)
# between builds; the binary is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p guestkit-worker \
 && install -D -m 0755 target/release/guestkit-worker /out/guestkit-worker

FROM debian:bookworm-slim
RUN groupadd --gid 10001 guestkit \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/guestkit --no-create-home \
      --shell /usr/sbin/nologin guestkit \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/guestkit /var/lib/guestkit/cache \
      /var/lib/guestkit/handlers /var/lib/guestkit/images
COPY --from=build /out/guestkit-worker /usr/local/bin/guestkit-worker
USER 10001:10001
# Logs go to a collector, not a terminal: no colour codes (`--log-format json` for JSON lines).
ENV HOME=/var/lib/guestkit \
    NO_COLOR=1 \
    GUESTKIT_CACHE_DIR=/var/lib/guestkit/cache \
    GUESTKIT_WORKER_API_URL=http://127.0.0.1:8080
WORKDIR /var/lib/guestkit
# Writable state (job store, compile cache) and the handlers directory. Mount the images
# directory yourself, read-only.
VOLUME ["/var/lib/guestkit", "/var/lib/guestkit/handlers"]
# 8080: HTTP API (/api/v1); 9090: Prometheus metrics (/metrics).
EXPOSE 8080 9090
# `guestkit-worker health` asks GET /api/v1/health: exit 0 when healthy, 3 when the worker
# answers 503 (store unreachable, shutting down) or cannot be reached.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/guestkit-worker", "health", "--output", "json"]
# SIGTERM stops claiming jobs and gives running ones --shutdown-grace seconds (default 30) to
# finish: stop the container with a longer timeout (docker stop -t 45).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/guestkit-worker"]
CMD ["daemon", "--listen", "0.0.0.0:8080", "--metrics-listen", "0.0.0.0:9090", "--data-dir", "/var/lib/guestkit"]
