/**
 * Through a real proxy (squid from the Debian archive, test/support/squid.ts), as a datacenter reaches
 * cloud-images.ubuntu.com. The fixture mirror is named `cloud-images.proxied.invalid`, a name only the
 * proxy resolves (its hosts_file): a request that bypasses the proxy cannot reach it. Covers HTTP_PROXY
 * with credentials (never shown), CONNECT to an https mirror with a private CA (`http.caFile`), config
 * over environment, and Keystone/Glance through the proxy, or direct by NO_PROXY or a target's `proxy: ""`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startMirror, type Mirror } from '../fixtures/mirror/index.js';
import { makeTestCertificates, squidUnavailable, startSquid, type Squid } from '../support/squid.js';
import { describeWithOpenStack, loadOpenStackEnv } from './openstack-env.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const CLI = path.join(REPO, 'src', 'cli.ts');
const HOST = 'cloud-images.proxied.invalid';
const DEAD_PROXY = 'http://127.0.0.1:9';

const unavailable = squidUnavailable();
const openstack = await loadOpenStackEnv();

interface CliResult { code: number | null; stdout: string; stderr: string }

/** The CLI with exactly `env` for proxies and OpenStack (none inherited), HOME without clouds.yaml. */
function cli(dir: string, configPath: string, env: Record<string, string>, ...args: string[]): Promise<CliResult> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(OS_|https?_proxy$|all_proxy$|no_proxy$)/i.test(k) && k !== 'CLOUDIMG_SYNC_CONFIG'));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, '--config', configPath, ...args], {
      cwd: REPO, env: { ...base, HOME: dir, XDG_CONFIG_HOME: path.join(dir, '.config'), ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function events(out: string): Array<Record<string, unknown>> {
  return out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

function writeConfig(dir: string, config: Record<string, unknown>): string {
  const file = path.join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, JSON.stringify({
    stateDir: path.join(dir, 'state'), cacheDir: path.join(dir, 'cache'),
    http: { retries: 1, retryBaseDelayMs: 10, retryMaxDelayMs: 20, idleTimeoutMs: 10_000, connectTimeoutMs: 5_000 },
    targets: [{ name: 'local', type: 'directory', path: path.join(dir, 'images') }],
    ...config,
  }));
  return file;
}

function imagesUnder(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith('.img')) : [];
}

describe('through a real proxy (squid)', { skip: unavailable && `squid unavailable: ${unavailable}` }, () => {
  let squid: Squid;
  let dir: string;
  before(async () => {
    squid = await startSquid({ hosts: { [HOST]: '127.0.0.1' } });
    dir = mkdtempSync(path.join(tmpdir(), 'cloudimg-sync-proxy-'));
  });
  after(async () => {
    await squid?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('HTTP_PROXY: the mirror, reachable only through the proxy, is synced through it; the proxy is logged once per cycle without its password', async () => {
    const mirror = await startMirror();
    try {
      const url = mirror.url.replace('127.0.0.1', HOST);
      const work = mkdtempSync(path.join(dir, 'http-'));
      const config = writeConfig(work, { source: { url, keyring: mirror.keyringPath, releases: ['noble'], arches: ['amd64'] } });

      const direct = await cli(work, config, {}, 'check');
      assert.equal(direct.code, 1, 'without a proxy the name does not resolve');
      assert.match(direct.stdout, /FAIL {2}source .*ENOTFOUND/);

      const proxy = squid.url.replace('http://', 'http://ops:s3cret@');
      const sync = await cli(work, config, { http_proxy: proxy, NO_PROXY: 'localhost' }, 'sync', '--once');
      assert.equal(sync.code, 0, sync.stdout + sync.stderr);
      assert.equal(imagesUnder(path.join(work, 'images')).length, 1);
      const logged = events(sync.stdout).filter((e) => e.event === 'http.proxy');
      assert.equal(logged.length, 1, 'once per cycle');
      assert.equal(logged[0]!.httpProxy, squid.url.replace('http://', 'http://ops:***@'));
      assert.equal(logged[0]!.origin, 'environment');
      assert.deepEqual(logged[0]!.noProxy, ['localhost']);
      assert.doesNotMatch(sync.stdout + sync.stderr, /s3cret/);
      const image = mirror.published({ channel: 'release' })[0]!;
      assert.ok(squid.accessLog().some((l) => l.includes(`GET http://${HOST}:`) && l.includes(image.fileName)), squid.accessLog().join('\n'));
    } finally {
      await mirror.close();
    }
  });

  test('CONNECT to an https mirror with a private CA (http.caFile); http.proxy in the config wins over HTTPS_PROXY', async () => {
    const certs = makeTestCertificates(HOST);
    const mirror = await startMirror({ tls: { key: certs.key, cert: certs.cert } });
    try {
      const url = mirror.url.replace('127.0.0.1', HOST);
      assert.match(url, /^https:/);
      const work = mkdtempSync(path.join(dir, 'https-'));
      const config = writeConfig(work, {
        source: { url, keyring: mirror.keyringPath, releases: ['noble'], arches: ['amd64'] },
        http: { retries: 1, retryBaseDelayMs: 10, retryMaxDelayMs: 20, idleTimeoutMs: 10_000, proxy: squid.url, caFile: certs.caFile },
      });
      const sync = await cli(work, config, { HTTPS_PROXY: DEAD_PROXY }, 'sync', '--once');
      assert.equal(sync.code, 0, sync.stdout + sync.stderr);
      assert.equal(imagesUnder(path.join(work, 'images')).length, 1);
      assert.equal(events(sync.stdout).find((e) => e.event === 'http.proxy')?.origin, 'config');
      assert.ok(squid.accessLog().some((l) => l.includes(`CONNECT ${HOST}:${new URL(url).port}`)), squid.accessLog().join('\n'));
    } finally {
      await mirror.close();
      rmSync(certs.dir, { recursive: true, force: true });
    }
  });

  describeWithOpenStack('Keystone and Glance', openstack, (os) => {
    const glance = (extra: Record<string, unknown> = {}) => writeConfig(dir, {
      source: { url: 'http://127.0.0.1:9', releases: ['noble'] },
      targets: [{ name: 'cloud', type: 'glance', ...extra }],
    });

    test('go through HTTP_PROXY like the openstack CLI; a dead proxy fails check', async () => {
      const before = squid.accessLog().length;
      const via = await cli(dir, glance(), { ...os.env, HTTP_PROXY: squid.url, HTTPS_PROXY: squid.url }, 'check', '--json');
      const target = (JSON.parse(via.stdout) as { checks: Array<{ name: string; ok: boolean; detail: string }> }).checks.find((c) => c.name === 'target:cloud')!;
      assert.equal(target.ok, true, target.detail);
      const proxied = squid.accessLog().slice(before);
      assert.ok(proxied.some((l) => /POST http:\/\/127\.0\.0\.1:\d+\/.*auth\/tokens/.test(l)), proxied.join('\n'));
      assert.ok(proxied.some((l) => /GET http:\/\/127\.0\.0\.1:9292\//.test(l)), proxied.join('\n'));

      const dead = await cli(dir, glance(), { ...os.env, HTTP_PROXY: DEAD_PROXY, HTTPS_PROXY: DEAD_PROXY }, 'check', '--json');
      assert.equal(dead.code, 1, dead.stdout);
      assert.equal((JSON.parse(dead.stdout) as { checks: Array<{ name: string; ok: boolean }> }).checks.find((c) => c.name === 'target:cloud')!.ok, false);
    });

    test('NO_PROXY, or the target\'s proxy: "", reach the cloud directly', async () => {
      const viaNoProxy = await cli(dir, glance(), { ...os.env, HTTP_PROXY: DEAD_PROXY, HTTPS_PROXY: DEAD_PROXY, no_proxy: 'localhost,127.0.0.0/8' }, 'check', '--json');
      assert.equal(JSON.parse(viaNoProxy.stdout).checks.find((c: { name: string }) => c.name === 'target:cloud').ok, true, viaNoProxy.stdout);
      const viaTarget = await cli(dir, glance({ proxy: '' }), { ...os.env, HTTP_PROXY: DEAD_PROXY, HTTPS_PROXY: DEAD_PROXY }, 'check', '--json');
      assert.equal(JSON.parse(viaTarget.stdout).checks.find((c: { name: string }) => c.name === 'target:cloud').ok, true, viaTarget.stdout);
    });
  });
});
