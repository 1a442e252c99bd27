/** The daemon's HTTP listener: GET /healthz (JSON, 200 or 503) and GET /metrics (Prometheus text). */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SyncError } from '../errors.js';
import type { HealthReport } from './health.js';

export interface StatusServer {
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface StatusServerOptions {
  listen: string;
  port: number;
  health: () => HealthReport;
  metrics: () => Promise<{ contentType: string; body: string }>;
}

export async function startStatusServer(options: StatusServerOptions): Promise<StatusServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path === '/healthz') {
      const report = options.health();
      res.writeHead(report.healthy ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : `${JSON.stringify(report)}\n`);
      return;
    }
    if (path === '/metrics') {
      options.metrics().then(
        ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(req.method === 'HEAD' ? undefined : body),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${String(err)}\n`),
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz or /metrics\n');
  });
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  try {
    server.listen(options.port, options.listen);
    await once(server, 'listening');
  } catch (err) {
    throw new SyncError('HEALTH_LISTEN_FAILED', `cannot listen on ${options.listen}:${options.port}: ${(err as Error).message}`,
      'pick a free health.port (or health.listen address), or set health.enabled: false', { cause: err });
  }
  const addr = server.address() as AddressInfo;
  return {
    address: addr.address,
    port: addr.port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
