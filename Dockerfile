# syntax=docker/dockerfile:1
# xarfd in a container: a static binary on distroless (CA certificates,
# tzdata, an unprivileged user, no shell).
#
#   docker build -t xarfd .
#   docker run -d --name xarfd -p 25:2525 --stop-timeout 45 \
#     -v xarfd-data:/var/lib/xarfd -v ./xarfd.yaml:/etc/xarfd/xarfd.yaml:ro xarfd
#
# Ports: 2525 SMTP (publish it as 25: the user is unprivileged), 8025 the
# HTTP API, /metrics and /healthz (the image's configuration keeps it on
# loopback; listen on 0.0.0.0:8025 with tokens to publish it).
# The build needs the checkout's .git for the version (see scripts/release).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The same command as scripts/release; e2e/release_test.go keeps them equal.
RUN CGO_ENABLED=0 go build -buildvcs=true -trimpath -ldflags="-s -w" -o /out/xarfd ./cmd/xarfd
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/xarfd /usr/bin/xarfd
COPY packaging/container/xarfd.yaml /etc/xarfd/xarfd.yaml
COPY --from=build --chown=nonroot:nonroot /out/data /var/lib/xarfd
USER nonroot:nonroot
WORKDIR /var/lib/xarfd
VOLUME ["/var/lib/xarfd"]
EXPOSE 2525 8025
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
  CMD ["/usr/bin/xarfd", "healthcheck", "-q", "-api", "http://127.0.0.1:8025"]
ENTRYPOINT ["/usr/bin/xarfd"]
CMD ["serve", "-config", "/etc/xarfd/xarfd.yaml"]
