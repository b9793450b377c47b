# eventsift: the daemon and its bundled plugins.
#
# `cargo xtask dist` builds the plugins and the daemon (the `dist` profile:
# the release build, stripped) and lays them out as an install tree
# (`bin/eventsift`, `share/eventsift/plugins/`), unpacked here under
# /usr/local. Only a Rust toolchain is needed: the default bundle is Rust
# only. The TypeScript plugins (`plugins-ts/`, `cargo xtask plugins --ts`,
# Node.js and npm) are not baked in; mount one into the plugin volume like
# any other.
#
# `.git` is not in the build context: pass the commit for `eventsift
# --version` as a build argument,
#   docker build --build-arg EVENTSIFT_GIT_COMMIT=$(git rev-parse --short=12 HEAD) .

FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add wasm32-wasip2
ARG EVENTSIFT_GIT_COMMIT=unknown
ENV EVENTSIFT_GIT_COMMIT=${EVENTSIFT_GIT_COMMIT}
WORKDIR /src
COPY . .
RUN cargo xtask dist

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/eventsift eventsift
COPY --from=build /src/target/eventsift-dist/ /usr/local/
# The plugin folder the daemon watches starts with the bundled plugins;
# mount a volume here to drop in your own.
RUN mkdir -p /var/lib/eventsift/data /var/lib/eventsift/plugins \
    && cp /usr/local/share/eventsift/plugins/*.wasm /var/lib/eventsift/plugins/ \
    && chown -R eventsift /var/lib/eventsift
USER eventsift
WORKDIR /var/lib/eventsift
ENV EVENTSIFT_PLUGINS=/var/lib/eventsift/plugins \
    EVENTSIFT_DATA_DIR=/var/lib/eventsift/data \
    EVENTSIFT_LOG_FORMAT=json
# The public listener (events, /healthz, /readyz). The admin listener
# (metrics, plugins, status page) binds 127.0.0.1:5050 (5051 for the
# writer) unless EVENTSIFT_ADMIN_LISTEN says otherwise, and is not exposed.
EXPOSE 5000
# Readiness through the admin listener (the slim base has no curl).
HEALTHCHECK --interval=10s --timeout=6s --start-period=120s --retries=3 \
    CMD ["eventsift", "health", "--timeout", "5s"]
ENTRYPOINT ["eventsift"]
CMD ["plugins", "list"]
