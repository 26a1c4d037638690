# tokentra-sync container image: built in a Rust image, run from a slim
# Debian image as an unprivileged user. The binary embeds its schema and
# price list, so the runtime image holds only the binary and CA certificates.
#
#   docker build -t tokentra-sync .
#   docker run --rm -v $PWD/my.toml:/etc/tokentra-sync/tokentra-sync.toml:ro tokentra-sync

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so editing our sources does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches tests/integration \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > benches/diff.rs && touch tests/integration/main.rs \
 && cargo build --release --locked --bin tokentra-sync \
 && rm -rf src benches tests
COPY . .
# The dummy build left newer timestamps on its own outputs: touch ours.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin tokentra-sync \
 && strip target/release/tokentra-sync

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tokentra \
 && useradd --system --uid 10001 --gid tokentra --home-dir /var/lib/tokentra-sync --create-home \
      --shell /usr/sbin/nologin tokentra \
 && mkdir -p /etc/tokentra-sync
COPY --from=build /src/target/release/tokentra-sync /usr/local/bin/tokentra-sync
COPY config/tokentra-sync.example.toml /etc/tokentra-sync/tokentra-sync.example.toml
USER tokentra:tokentra
WORKDIR /var/lib/tokentra-sync
# state_dir (per-account locks) must be writable by the user.
ENV TOKENTRA__STATE_DIR=/var/lib/tokentra-sync
# The admin API (/metrics, /healthz, /readyz): set [admin] listen (or
# TOKENTRA__ADMIN__LISTEN=0.0.0.0:9464) to reach it from outside the container.
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3 && grep -q ok <&3"]
ENTRYPOINT ["/usr/local/bin/tokentra-sync"]
CMD ["run", "-c", "/etc/tokentra-sync/tokentra-sync.toml"]
