# cdcview in a container: a static-ish release build on Debian bookworm.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin cdcview

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/cdcview /usr/local/bin/cdcview
ENV CDCVIEW_LISTEN=0.0.0.0:8001
EXPOSE 8001
ENTRYPOINT ["cdcview"]
CMD ["serve"]
