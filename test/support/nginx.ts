/**
 * A real nginx (Debian's package, installed by test/nginx/ensure.sh on first use) serving a directory
 * with `autoindex on`, the way an air-gapped site serves its internal mirror. Each call starts its own
 * nginx on 127.0.0.1 with a config, logs and temp paths in a private temp dir; `stop()` ends it.
 *
 * Without nginx, `nginxAvailability()` says why and suites skip — or, with CI=true, fail.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

const ENSURE_SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../nginx/ensure.sh');

export type NginxAvailability = { available: true; binary: string } | { available: false; reason: string };

/** Run test/nginx/ensure.sh (installs nginx when missing); never throws. */
export async function nginxAvailability(): Promise<NginxAvailability> {
  try {
    const { stdout, stderr } = await promisify(execFile)('bash', [ENSURE_SCRIPT], { timeout: 600_000 });
    const binary = stdout.trim();
    if (binary) return { available: true, binary };
    return { available: false, reason: stderr.trim().split('\n').pop() ?? 'test/nginx/ensure.sh found no nginx' };
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? (err as Error).message).trim();
    return { available: false, reason: stderr.split('\n').pop() ?? 'test/nginx/ensure.sh failed' };
  }
}

export interface StaticServer {
  /** `http://127.0.0.1:PORT` without a trailing slash. */
  url: string;
  /** nginx's access log lines so far (`METHOD PATH STATUS`). */
  accessLog(): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * Serve `root` read-only with autoindex on, workers as www-data (as Debian's default site does), so
 * what is served must be world-readable.
 */
export async function startNginx(binary: string, root: string): Promise<StaticServer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cloudimg-nginx-'));
  let lastError = '';
  // A free port can be taken between asking for it and nginx binding it: try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    await writeFile(path.join(dir, 'nginx.conf'), nginxConfig(dir, root, port));
    const child = spawn(binary, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString('utf8'); });
    if (await listening(port, child, path.join(dir, 'nginx.pid'))) {
      return {
        url: `http://127.0.0.1:${port}`,
        accessLog: async () => (await readFile(path.join(dir, 'access.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean),
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) {
            const exited = once(child, 'exit');
            child.kill('SIGTERM');
            await exited;
          }
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    const log = await readFile(path.join(dir, 'error.log'), 'utf8').catch(() => '');
    lastError = `${stderr}\n${log}`.trim().split('\n').slice(-3).join(' | ');
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`nginx did not start: ${lastError}`);
}

function nginxConfig(dir: string, root: string, port: number): string {
  const temp = (name: string) => path.join(dir, `${name}-temp`);
  return `daemon off;
worker_processes 1;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} warn;
${process.getuid?.() === 0 ? 'user www-data;' : ''}
events { worker_connections 64; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  log_format plain '$request_method $uri $status';
  access_log ${path.join(dir, 'access.log')} plain;
  client_body_temp_path ${temp('body')};
  proxy_temp_path ${temp('proxy')};
  fastcgi_temp_path ${temp('fastcgi')};
  uwsgi_temp_path ${temp('uwsgi')};
  scgi_temp_path ${temp('scgi')};
  server {
    listen 127.0.0.1:${port};
    root ${root};
    autoindex on;
  }
}
`;
}

/**
 * Whether nginx serves on `port` within a few seconds (false once it has exited). nginx writes its pid file
 * only after binding its sockets, so a port some other process took in the meantime does not count.
 */
async function listening(port: number, child: ChildProcess, pidFile: string): Promise<boolean> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    const pid = await readFile(pidFile, 'utf8').catch(() => '');
    const ok = pid.trim() === String(child.pid) && await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => resolve(false));
    });
    if (ok) return child.exitCode === null;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

