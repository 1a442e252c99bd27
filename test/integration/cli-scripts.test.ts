/**
 * `plan` and `check` as scripts and init systems use them: on a running system (the state lock held by
 * another process), as PID 1 of a container, with `--json` parsed by a program, and with exit codes that
 * say what kind of failure it was.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { acquireStateLock } from '../../src/state/lock.js';
import { startMirror, type Mirror } from '../fixtures/mirror/index.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const CLI = path.join(REPO, 'src', 'cli.ts');

interface CliResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** An environment without OpenStack credentials anywhere (no OS_*, no clouds.yaml under HOME). */
function cleanEnv(home: string): NodeJS.ProcessEnv {
  return Object.fromEntries([
    ...Object.entries(process.env).filter(([k]) => !k.startsWith('OS_') && k !== 'CLOUDIMG_SYNC_CONFIG'),
    ['HOME', home], ['XDG_CONFIG_HOME', path.join(home, '.config')],
  ]);
}

function start(command: string[], world: World): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(command[0]!, command.slice(1), { cwd: REPO, env: cleanEnv(world.dir), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

function cli(world: World, ...args: string[]): Promise<CliResult> {
  return start([process.execPath, '--import', 'tsx', CLI, '--config', world.configPath, ...args], world).done;
}

interface World { mirror: Mirror; dir: string; configPath: string; write(config: Record<string, unknown>): void }

let world: World | undefined;
afterEach(async () => {
  await world?.mirror.close();
  if (world) rmSync(world.dir, { recursive: true, force: true });
  world = undefined;
});

async function createWorld(config: Record<string, unknown> = {}): Promise<World> {
  const mirror = await startMirror();
  const dir = mkdtempSync(path.join(tmpdir(), 'cloudimg-sync-scripts-'));
  const w: World = {
    mirror, dir, configPath: path.join(dir, 'config.yaml'),
    write(more) {
      const source = { url: mirror.url, keyring: mirror.keyringPath, releases: ['noble'], arches: ['amd64'], ...(more.source as object | undefined) };
      writeFileSync(w.configPath, JSON.stringify({
        stateDir: path.join(dir, 'state'), cacheDir: path.join(dir, 'cache'),
        http: { retries: 1, retryBaseDelayMs: 10, retryMaxDelayMs: 20, idleTimeoutMs: 5_000 },
        targets: [{ name: 'local', type: 'directory', path: path.join(dir, 'images') }],
        ...more, source,
      }));
    },
  };
  w.write(config);
  world = w;
  return w;
}

describe('plan and check for scripts and running systems', () => {
  test('plan --json runs while another process holds the lock: exactly one JSON document on stdout, logs on stderr, structured items', async () => {
    const w = await createWorld({ source: { verifySignature: false } });
    const lock = acquireStateLock(path.join(w.dir, 'state'));
    try {
      const plan = await cli(w, 'plan', '--json');
      assert.equal(plan.code, 0, plan.stderr);
      const doc = JSON.parse(plan.stdout) as { items: Array<Record<string, unknown>>; sourceErrors: string[] };
      const image = w.mirror.published({ channel: 'release' })[0]!;
      assert.deepEqual(doc.items, [
        { action: 'download', channel: 'release', variant: 'server', release: 'noble', version: '24.04', arch: 'amd64', serial: image.serial, url: `${w.mirror.url}/releases/noble/release-${image.serial}/${image.fileName}` },
        { action: 'publish', channel: 'release', variant: 'server', release: 'noble', version: '24.04', arch: 'amd64', serial: image.serial, url: `${w.mirror.url}/releases/noble/release-${image.serial}/${image.fileName}`, target: 'local' },
      ]);
      assert.deepEqual(doc.sourceErrors, []);
      const logged = plan.stderr.trim().split('\n').map((l) => JSON.parse(l) as { event: string });
      assert.ok(logged.some((l) => l.event === 'source.signature.disabled'), 'the warning goes to stderr');
      assert.equal(w.mirror.requests.filter((r) => r.path.endsWith('.img')).length, 0);
    } finally {
      lock.release();
    }
  });

  test('plan ends on SIGTERM even as PID 1 of a PID namespace, where unhandled signals are ignored', async () => {
    const w = await createWorld();
    w.mirror.inject({ path: /\/releases\/noble\/$/, fault: 'slow', bytesPerSecond: 1 });
    const { child, done } = start(['unshare', '--pid', '--fork', '--mount-proc', '--kill-child=SIGKILL',
      process.execPath, '--import', 'tsx', CLI, '--config', w.configPath, 'plan'], w);
    const deadline = Date.now() + 20_000;
    while (!w.mirror.requests.some((r) => r.path.endsWith('/releases/noble/'))) {
      assert.ok(Date.now() < deadline, 'plan asked for the listing');
      await sleep(50);
    }
    const init = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim());
    process.kill(init, 'SIGTERM');
    const ended = await Promise.race([done, sleep(5_000, undefined)]);
    if (!ended) child.kill('SIGKILL');
    assert.ok(ended, 'plan ended within 5 s of SIGTERM');
    assert.equal(ended.code, 143, ended.stderr);
    assert.match(ended.stderr, /plan interrupted by SIGTERM/);
  });

  test('a mistyped release fails check and sync at config load with "did you mean", exit 2', async () => {
    const w = await createWorld({ source: { releases: ['nobel'] } });
    for (const args of [['check'], ['sync', '--once'], ['plan']]) {
      const res = await cli(w, ...args);
      assert.equal(res.code, 2, `${args.join(' ')}: ${res.stderr}`);
      assert.match(res.stderr, /^cloudimg-sync: CONFIG_INVALID: .*source\.releases\[0\]: unknown release nobel; did you mean noble\? \(fix: /);
    }
    assert.equal(w.mirror.requests.length, 0);
  });

  test('check validates the releases against the source: one it does not have fails with exit 2', async () => {
    const w = await createWorld({ source: { releases: ['noble', 'zebu'] } });
    const res = await cli(w, 'check', '--json');
    assert.equal(res.code, 2, res.stderr);
    const report = JSON.parse(res.stdout) as { ok: boolean; checks: Array<{ name: string; ok: boolean; detail: string }> };
    const source = report.checks.find((c) => c.name === 'source')!;
    assert.equal(source.ok, false);
    assert.match(source.detail, /^CONFIG_INVALID: unknown release zebu: .*\/releases\/zebu\/ answered 404 \(fix: correct source\.releases/);
    assert.doesNotMatch(source.detail, /noble/);
  });

  test('missing OpenStack credentials are exit 2 for every command, before any download', async () => {
    const w = await createWorld({ targets: [{ name: 'cloud', type: 'glance' }], health: { port: 0 }, runOnStart: true });
    for (const args of [['sync', '--once'], ['plan'], ['check'], ['daemon']]) {
      const res = await cli(w, ...args);
      assert.equal(res.code, 2, `${args.join(' ')}: exit ${res.code}\n${res.stdout}\n${res.stderr}`);
      assert.match(res.stdout + res.stderr, /CONFIG_INVALID: no Keystone auth URL/);
    }
    assert.equal(w.mirror.requests.filter((r) => r.path.endsWith('.img')).length, 0);
  });

  test('usage errors (unknown command, unknown option) are exit 2, as the help says', async () => {
    const w = await createWorld();
    for (const args of [['bogus'], ['sync', '--bogus'], ['plan', '--jsn']]) {
      const res = await cli(w, ...args);
      assert.equal(res.code, 2, `${args.join(' ')}: ${res.stderr}`);
    }
    const help = await cli(w, '--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /2 bad configuration or usage/);
  });
});
