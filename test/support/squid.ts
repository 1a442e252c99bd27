/**
 * A real squid on 127.0.0.1 for the proxy tests, with a config of its own: names in `hosts` resolve only
 * inside the proxy (its `hosts_file`), so a request that bypasses the proxy cannot reach them. squid is
 * installed by test/proxy/ensure.sh on first use; `squidUnavailable()` says why it cannot run (in CI that
 * fails the suite instead of skipping it).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.js';

const ENSURE = fileURLToPath(new URL('../proxy/ensure.sh', import.meta.url));

/** undefined when squid can run here (installing it first if needed), else the reason. */
export function squidUnavailable(): string | undefined {
  const res = spawnSync('bash', [ENSURE], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`test/proxy/ensure.sh failed: ${res.stderr}`);
  if (spawnSync('sh', ['-c', 'command -v squid'], { encoding: 'utf8' }).status === 0) return undefined;
  const reason = res.stderr.trim() || 'squid is not installed';
  if (process.env.CI === 'true') throw new Error(`proxy tests cannot run in CI: ${reason}`);
  return reason;
}

export interface Squid {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** Lines of squid's access log so far (`... TCP_TUNNEL/200 ... CONNECT host:port ...`). */
  accessLog(): string[];
  close(): Promise<void>;
}


async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

export async function startSquid({ hosts = {} }: { hosts?: Record<string, string> } = {}): Promise<Squid> {
  const dir = mkdtempSync(path.join(tmpdir(), 'cloudimg-squid-'));
  // squid drops root for the `proxy` user: it must write its logs and pid here.
  chmodSync(dir, 0o777);
  const port = await freePort();
  writeFileSync(path.join(dir, 'hosts'), Object.entries(hosts).map(([name, ip]) => `${ip} ${name}\n`).join(''));
  writeFileSync(path.join(dir, 'squid.conf'), [
    `http_port 127.0.0.1:${port}`,
    `pid_filename ${dir}/squid.pid`,
    `cache_log ${dir}/cache.log`,
    `access_log stdio:${dir}/access.log squid`,
    `hosts_file ${dir}/hosts`,
    `coredump_dir ${dir}`,
    'cache deny all',
    'http_access allow all',
    'shutdown_lifetime 0 seconds',
    'visible_hostname cloudimg-sync-test-proxy',
    'logfile_rotate 0',
    'dns_timeout 5 seconds',
    '',
  ].join('\n'));
  const child: ChildProcess = spawn('squid', ['-N', '-f', path.join(dir, 'squid.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const deadline = Date.now() + 20_000;
  while (!(await listening(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      const log = existsSync(path.join(dir, 'cache.log')) ? readFileSync(path.join(dir, 'cache.log'), 'utf8') : '';
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`squid did not start on 127.0.0.1:${port}: ${stderr}\n${log.slice(-2000)}`);
    }
    await sleep(100);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    accessLog() {
      const file = path.join(dir, 'access.log');
      return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
    },
    async close() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A CA and a server certificate for `hostName`, signed by it (PEM), made with openssl. */
export function makeTestCertificates(hostName: string): { caFile: string; key: string; cert: string; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'cloudimg-tls-'));
  const run = (args: string[]) => {
    const res = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (res.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${res.stderr}`);
  };
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=cloudimg-sync test CA']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${hostName}`]);
  writeFileSync(path.join(dir, 'san.ext'), `subjectAltName=DNS:${hostName}\n`);
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext']);
  return {
    dir,
    caFile: path.join(dir, 'ca.pem'),
    key: readFileSync(path.join(dir, 'server.key'), 'utf8'),
    cert: readFileSync(path.join(dir, 'server.pem'), 'utf8'),
  };
}
