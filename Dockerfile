# Multi-stage build of guestkit-worker. The runtime image runs as an unprivileged user and needs
# no capabilities and no devices: every disk image is read in userspace.
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p guestkit-worker \
 && install -D target/release/guestkit-worker /out/guestkit-worker

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/guestkit guestkit \
 && install -d -o guestkit -g guestkit /var/lib/guestkit /var/lib/guestkit/handlers
COPY --from=build /out/guestkit-worker /usr/local/bin/guestkit-worker
USER 10001:10001
ENV GUESTKIT_CACHE_DIR=/var/lib/guestkit/cache \
    GUESTKIT_HANDLERS_DIR=/var/lib/guestkit/handlers
ENTRYPOINT ["/usr/local/bin/guestkit-worker"]
CMD ["run", "--operation", "echo", "--payload", "{\"hello\":\"container\"}"]
