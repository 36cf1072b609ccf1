# syntax=docker/dockerfile:1
#
# sidecar-watch operator image.
#
# Choice: a fully static musl binary on distroless/static (nonroot). kube/k8s-openapi use rustls
# with ring (no OpenSSL, no glibc-only dependency), so a musl build needs only musl-gcc for ring's
# C/asm parts. The runtime image then has no libc, no shell and no package manager: just the
# binary, CA certificates, tzdata and an /etc/passwd with the nonroot user 65532.
# (distroless/cc + a glibc build would also work but ships glibc/libgcc we do not need.)
#
# Build:   docker build -t sidecar-watch:dev .
# Other architectures: --build-arg RUST_TARGET=aarch64-unknown-linux-musl on an arm64 builder.
# scripts/check-deploy.sh checks that the COPY --from=builder path below is what
# `cargo build --release --target $RUST_TARGET` produces for the binary named in Cargo.toml.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
ARG RUST_TARGET=x86_64-unknown-linux-musl
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add ${RUST_TARGET}
WORKDIR /src
# The whole workspace (root package + bench, harness and testkit members + benches), minus what
# .dockerignore drops.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo build --release --locked --target ${RUST_TARGET} --bin sidecar-watch \
 && /src/target/${RUST_TARGET}/release/sidecar-watch --help >/dev/null

FROM gcr.io/distroless/static-debian12:nonroot
ARG RUST_TARGET=x86_64-unknown-linux-musl
LABEL org.opencontainers.image.title="sidecar-watch" \
      org.opencontainers.image.description="Kubernetes operator that watches sidecar containers and fires alerts on them" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /src/target/${RUST_TARGET}/release/sidecar-watch /sidecar-watch
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/sidecar-watch"]
CMD ["run"]
