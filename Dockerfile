# cloudimg-sync container: `daemon` by default; state and cache on volumes; /healthz for the HEALTHCHECK.
#
#   docker build -t cloudimg-sync .
#   docker run -d --name cloudimg-sync --env-file cloudimg-sync.env \
#     -v /etc/cloudimg-sync/config.yaml:/etc/cloudimg-sync/config.yaml:ro \
#     -v cloudimg-sync-state:/var/lib/cloudimg-sync -v cloudimg-sync-cache:/var/cache/cloudimg-sync \
#     -p 127.0.0.1:9465:9465 --stop-timeout 45 cloudimg-sync
#   docker logs -f cloudimg-sync | npx pino-pretty
#
# Other commands: docker run --rm ... cloudimg-sync check | status | history | plan | sync --once
ARG NODE_VERSION=20

# Production dependencies, native modules (better-sqlite3) compiled where the toolchain is.
FROM node:${NODE_VERSION}-bookworm AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# TypeScript -> dist/: one bundled file, and its V8 code cache made by a training run of this node (the
# runtime's: same NODE_VERSION) with the ENTRYPOINT's flags; keys/ for that run's config (scripts/build.ts).
FROM node:${NODE_VERSION}-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/build.ts ./scripts/
COPY src ./src
COPY keys ./keys
RUN npm run build

# Runtime: slim Node, no compiler, no dev dependencies, a non-root user.
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production \
    CLOUDIMG_SYNC_CONFIG=/etc/cloudimg-sync/config.yaml
WORKDIR /app
# qemu-utils: qemu-img, for glance targets with diskFormat: raw.
RUN apt-get update \
 && apt-get install -y --no-install-recommends qemu-utils \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 cloudimg-sync \
 && useradd --system --uid 10001 --gid cloudimg-sync --home-dir /var/lib/cloudimg-sync --shell /usr/sbin/nologin cloudimg-sync \
 && install -d -o cloudimg-sync -g cloudimg-sync -m 0750 /var/lib/cloudimg-sync /var/cache/cloudimg-sync \
 && install -d -m 0755 /etc/cloudimg-sync \
 && printf '%s\n' \
    '# Default container config: mount your own over /etc/cloudimg-sync/config.yaml (see /app/config/config.example.yaml).' \
    'stateDir: /var/lib/cloudimg-sync' \
    'cacheDir: /var/cache/cloudimg-sync' \
    '# Inside the container network namespace; publish the port on 127.0.0.1 of the host.' \
    'health: { listen: 0.0.0.0, port: 9465 }' \
    'targets:' \
    '  - { name: local, type: directory, path: /var/lib/cloudimg-sync/images }' \
    > /etc/cloudimg-sync/config.yaml
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY keys ./keys
COPY config ./config
USER cloudimg-sync
VOLUME ["/var/lib/cloudimg-sync", "/var/cache/cloudimg-sync"]
EXPOSE 9465
# No curl in the slim image: Node's fetch. Keep the port in step with health.port.
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9465/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM aborts the transfer in flight within shutdownGraceMs (30 s): give `docker stop` more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "--max-semi-space-size=1", "/app/dist/cli.js"]
CMD ["daemon"]
