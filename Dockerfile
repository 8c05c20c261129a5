# cdcview in a container: a static-ish release build on Debian bookworm.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
COPY views ./views
RUN cargo build --release --locked --bin cdcview

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/cdcview /usr/local/bin/cdcview
COPY views /etc/cdcview/views
ENV CDCVIEW_LISTEN=0.0.0.0:8001
ENV CDCVIEW_VIEWS=/etc/cdcview/views
EXPOSE 8001
ENTRYPOINT ["cdcview"]
CMD ["serve"]
