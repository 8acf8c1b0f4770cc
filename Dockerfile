# Container image for the operator (what charts/ads-export-operator deploys).
# Build: docker build -t ghcr.io/ads-export-operator/ads-export-operator:0.1.0 .
# The runtime image runs as uid 65532 with no shell, matching the chart's security context.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src ./src
RUN cargo build --release --locked --bin ads-export-operator --bin ads-emulator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ads-export-operator /usr/local/bin/ads-export-operator
COPY --from=build /src/target/release/ads-emulator /usr/local/bin/ads-emulator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ads-export-operator"]
CMD ["run"]
