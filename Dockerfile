# eventsift: the daemon and its bundled plugins.
#
# The build steps are the README's: `cargo xtask plugins` builds the plugins,
# `cargo build --release -p eventsift` the daemon. Only a Rust toolchain is
# needed: the default bundle is Rust only. The TypeScript plugins
# (`plugins-ts/`, `cargo xtask plugins --ts`, Node.js and npm) are not baked
# in; mount one into the plugin volume like any other.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo xtask plugins \
    && cargo build --release -p eventsift

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/eventsift eventsift
COPY --from=build /src/target/release/eventsift /usr/local/bin/eventsift
# Bundled plugins; mount a volume here to drop in your own.
COPY --from=build /src/target/plugins/ /var/lib/eventsift/plugins/
RUN mkdir -p /var/lib/eventsift/data && chown -R eventsift /var/lib/eventsift
USER eventsift
WORKDIR /var/lib/eventsift
ENV EVENTSIFT_PLUGINS=/var/lib/eventsift/plugins \
    EVENTSIFT_DATA_DIR=/var/lib/eventsift/data
EXPOSE 5000
ENTRYPOINT ["eventsift"]
CMD ["plugins", "list"]
