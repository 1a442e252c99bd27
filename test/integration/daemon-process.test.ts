/**
 * The daemon and the operator commands as child processes (`node --import tsx src/cli.ts ...`) against
 * the fixture mirror, with a directory target: what an operator sees is exit codes, JSON log lines on
 * stdout, /healthz and /metrics. The last suite publishes to the real Keystone+Glance (run under
 * flock /tmp/cloudimg-it.lock).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, describe, test } from 'node:test';
import { startMirror, type Mirror, type MirrorOptions } from '../fixtures/mirror/index.js';
import { SyncMetrics } from '../../src/daemon/metrics.js';
import { isEventName, type EventRecord } from '../../src/events.js';
import { resolveAuthSettings } from '../../src/openstack/auth-config.js';
import { OpenStackError } from '../../src/openstack/errors.js';
import { GlanceClient } from '../../src/openstack/glance.js';
import { KeystoneSession } from '../../src/openstack/keystone.js';
import { probeStateLock } from '../../src/state/lock.js';
import { PROP } from '../../src/targets/glance/image-spec.js';
import { describeWithOpenStack, loadOpenStackEnv } from './openstack-env.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const CLI = path.join(REPO, 'src', 'cli.ts');
const YEARLY = '0 0 1 1 *';
const openstack = await loadOpenStackEnv();

interface LogLine {
  event?: string;
  level: string;
  msg: string;
  time: string;
  [key: string]: unknown;
}

/** A CLI child process: JSON log lines parsed as they arrive, stderr kept, exit awaited. */
class CliProcess {
  readonly lines: LogLine[] = [];
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly waiters = new Set<() => void>();

  /** `signalled`: the process signals go to, when `child` is a wrapper (unshare) that does not forward them. */
  constructor(readonly child: ChildProcess, private readonly signalled: () => number | undefined = () => child.pid) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.stdout += `${line}\n`;
      try {
        this.lines.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line (a command's own output)
      }
      for (const wake of this.waiters) wake();
    });
    child.stderr!.on('data', (chunk: Buffer) => { this.stderr += chunk.toString(); });
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => {
      resolve({ code, signal });
      for (const wake of this.waiters) wake();
    }));
  }

  get pid(): number {
    return this.child.pid!;
  }

  events(name: string): LogLine[] {
    return this.lines.filter((l) => l.event === name);
  }

  /** Resolves with the `count`-th line matching, failing with the log so far on timeout or exit. */
  async waitFor(match: (l: LogLine) => boolean, { count = 1, timeoutMs = 20_000 } = {}): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.filter(match);
      if (found.length >= count) return found[count - 1]!;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        assert.fail(`process exited (${this.child.exitCode ?? this.child.signalCode}) before the awaited line\n${this.transcript()}`);
      }
      if (Date.now() > deadline) assert.fail(`timed out waiting for a log line\n${this.transcript()}`);
      await new Promise<void>((resolve) => {
        const wake = () => { this.waiters.delete(wake); clearTimeout(timer); resolve(); };
        const timer = setTimeout(wake, 200);
        this.waiters.add(wake);
      });
    }
  }

  waitForEvent(event: string, options: { count?: number; timeoutMs?: number; where?: (l: LogLine) => boolean } = {}): Promise<LogLine> {
    return this.waitFor((l) => l.event === event && (options.where?.(l) ?? true), options);
  }

  transcript(): string {
    return `${this.lines.map((l) => `${l.time} ${l.level} ${l.event ?? ''} ${l.msg}`).join('\n')}\nstderr: ${this.stderr}`;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const pid = this.signalled();
      if (pid !== undefined && pid !== this.child.pid) process.kill(pid, signal);
      else this.child.kill(signal);
    }
    return this.exited;
  }
}

interface World {
  mirror: Mirror;
  dir: string;
  configPath: string;
  writeConfig(overrides?: Record<string, unknown>): void;
  cli(...args: string[]): CliProcess;
  /** Like a container start: PID 1 of a new PID namespace, /proc of its own, hostname `host`. */
  cliInContainer(host: string, ...args: string[]): CliProcess;
  daemon(): CliProcess;
  close(): Promise<void>;
}

const processes: CliProcess[] = [];
let world: World | undefined;

afterEach(async () => {
  for (const p of processes.splice(0)) await p.stop('SIGKILL');
  await world?.close();
  world = undefined;
});

/** `env`: added to the children's environment (e.g. the test OpenStack's OS_* variables). */
async function createWorld(mirrorOptions: MirrorOptions = {}, overrides: Record<string, unknown> = {}, env: Readonly<Record<string, string>> = {}): Promise<World> {
  const mirror = await startMirror(mirrorOptions);
  const dir = mkdtempSync(path.join(tmpdir(), 'cloudimg-sync-daemon-'));
  const configPath = path.join(dir, 'config.yaml');
  const w: World = {
    mirror, dir, configPath,
    writeConfig(more = {}) {
      const config = {
        source: { url: mirror.url, keyring: mirror.keyringPath, releases: ['noble'], arches: ['amd64'] },
        stateDir: path.join(dir, 'state'),
        cacheDir: path.join(dir, 'cache'),
        http: { retries: 2, retryBaseDelayMs: 10, retryMaxDelayMs: 50, idleTimeoutMs: 5_000 },
        targets: [{ name: 'local', type: 'directory', path: path.join(dir, 'images') }],
        schedule: YEARLY,
        runOnStart: true,
        shutdownGraceMs: 5_000,
        health: { port: 0 },
        ...overrides,
        ...more,
      };
      writeFileSync(configPath, JSON.stringify(config, null, 2)); // JSON is YAML
    },
    cli(...args) {
      const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args, '--config', configPath], {
        cwd: REPO, env: { ...process.env, ...env, CLOUDIMG_SYNC_CONFIG: '' }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      const p = new CliProcess(child);
      processes.push(p);
      return p;
    },
    cliInContainer(host, ...args) {
      const child = spawn('unshare', [
        '--pid', '--fork', '--mount-proc', '--uts', '--kill-child=SIGKILL',
        'sh', '-c', 'hostname "$0" && exec "$@"', host,
        process.execPath, '--import', 'tsx', CLI, ...args, '--config', configPath,
      ], { cwd: REPO, env: { ...process.env, CLOUDIMG_SYNC_CONFIG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
      const p = new CliProcess(child, () => namespaceInit(child.pid!));
      processes.push(p);
      return p;
    },
    daemon() {
      return w.cli('daemon');
    },
    async close() {
      await mirror.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  w.writeConfig();
  world = w;
  return w;
}

async function healthPort(daemon: CliProcess): Promise<number> {
  return Number((await daemon.waitForEvent('daemon.health.listening')).port);
}

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** `name{labels} value` lines of a Prometheus exposition, as `name{labels}` -> value. */
async function scrape(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) samples.set(m[1]!, Number(m[2]));
  }
  return samples;
}

/** The outer pid of PID 1 in the namespace `unshare --fork` (pid `unsharePid`) created: its only child. */
function namespaceInit(unsharePid: number): number | undefined {
  try {
    const pid = Number(readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').trim().split(' ')[0]);
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function imageRequests(mirror: Mirror) {
  return mirror.requests.filter((r) => r.path.endsWith('.img'));
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.join(d.parentPath, d.name));
}

function sha256Of(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

async function until(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

describe('daemon as a child process against the fixture mirror', () => {
  test('a schedule of seconds runs cycles one at a time, skipping ticks while a cycle runs', async () => {
    const w = await createWorld({}, { schedule: '* * * * * *' });
    w.mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: 200_000, times: 1 }); // ~2.6 s: spans ticks
    const daemon = w.daemon();
    await daemon.waitForEvent('sync.run.finished', { count: 3 });
    assert.equal((await daemon.stop()).code, 0);

    assert.ok(daemon.events('daemon.cycle.skipped').length >= 1, 'a tick during the slow cycle is skipped');
    let running = 0;
    for (const line of daemon.lines) {
      if (line.event === 'sync.run.started') running++;
      if (line.event === 'sync.run.finished') running--;
      assert.ok(running <= 1, 'never two cycles at once');
    }
    const results = daemon.events('sync.run.finished').map((l) => l.result);
    assert.deepEqual(results.slice(0, 3), ['ok', 'ok', 'ok']);
    assert.equal(daemon.events('sync.run.finished')[0]!.downloaded, 1);
    assert.equal(imageRequests(w.mirror).length, 1, 'later cycles find everything published');
  });

  test('SIGTERM mid-download exits 0 within the grace time and the next start resumes from the same byte', async () => {
    const size = 1024 * 1024;
    const w = await createWorld({ imageSizeBytes: size });
    w.mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: 100_000 });
    const first = w.daemon();
    await until(() => (imageRequests(w.mirror)[0]?.bytesSent ?? 0) >= 200_000, 'the download is under way');
    const stopAt = Date.now();
    const exit = await first.stop('SIGTERM');
    const stopMs = Date.now() - stopAt;
    assert.equal(exit.code, 0, first.transcript());
    assert.ok(stopMs < 5_000, `stopped in ${stopMs} ms, within shutdownGraceMs`);
    const stopped = first.events('sync.run.finished')[0];
    assert.equal(stopped?.result, 'interrupted');
    assert.equal(stopped?.level, 'info', 'a shutdown is not an error');
    assert.equal(stopped?.failed, 0, 'no failure counted');
    assert.equal(first.events('image.download.aborted')[0]?.level, 'info');
    assert.deepEqual(first.lines.filter((l) => l.level === 'error' || l.level === 'warn').map((l) => l.event), [], 'no warning or error on a clean shutdown');
    assert.ok(first.events('daemon.stopped').length === 1);
    assert.equal(probeStateLock(path.join(w.dir, 'state')), undefined, 'the lock is released');

    const part = filesUnder(path.join(w.dir, 'cache')).find((f) => f.endsWith('.img.part'));
    assert.ok(part, 'a resumable .part is left');
    const partBytes = statSync(part).size;
    assert.ok(partBytes > 0 && partBytes < size);

    w.mirror.clearFaults();
    const second = w.daemon();
    const port = await healthPort(second);
    const finished = await second.waitForEvent('sync.run.finished');
    assert.equal(finished.result, 'ok', second.transcript());
    const resumed = imageRequests(w.mirror)[1]!;
    assert.equal(resumed.headers.range, `bytes=${partBytes}-`);
    assert.equal(resumed.status, 206);
    const image = w.mirror.published({ channel: 'release' })[0]!;
    assert.equal(sha256Of(path.join(w.dir, 'images', 'noble', image.serial, image.fileName)), image.sha256);

    const metrics = await scrape(port);
    assert.equal(metrics.get('cloudimg_sync_download_bytes_total'), size - partBytes, 'only the bytes of the resumed range moved');
    assert.equal(metrics.get('cloudimg_sync_download_bytes_total'), resumed.bytesSent);
    assert.equal(metrics.get('cloudimg_sync_upload_bytes_total{target="local"}'), size);
    assert.equal((await second.stop()).code, 0);
  });

  test('a second instance on the same state is refused with exit code 3; a lock left by kill -9 does not block', async () => {
    const w = await createWorld({}, { runOnStart: false });
    const first = w.daemon();
    await first.waitForEvent('daemon.started');

    const second = w.daemon();
    assert.equal((await second.exited).code, 3);
    assert.match(second.stderr, /^cloudimg-sync: ALREADY_RUNNING: another cloudimg-sync \(\d+@[^)]+\) holds .*cloudimg-sync\.lock \(fix: .*\)\n$/);
    const once = w.cli('sync', '--once');
    assert.equal((await once.exited).code, 3, once.stderr);

    assert.equal((await first.stop('SIGKILL')).signal, 'SIGKILL');
    assert.ok(existsSync(path.join(w.dir, 'state', 'cloudimg-sync.lock')), 'kill -9 leaves the lock file (the kernel dropped its lock)');
    const third = w.daemon();
    await third.waitForEvent('daemon.started');
    assert.equal((await third.stop()).code, 0);
  });

  test('killed with -9 mid-download as PID 1 of a container, it restarts at once in a new PID namespace under another hostname and resumes the .part', async () => {
    const size = 16 * 1024 * 1024;
    const w = await createWorld({ imageSizeBytes: size });
    w.mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: 3_000_000 });
    const first = w.cliInContainer('box-a', 'daemon');
    await first.waitForEvent('daemon.started');
    // Past the download's two 4 MiB write pieces, so that bytes are on disk when it dies.
    await until(() => (imageRequests(w.mirror)[0]?.bytesSent ?? 0) >= 9_000_000, 'the download is under way');
    await first.stop('SIGKILL');
    assert.equal(first.events('sync.run.finished').length, 0, 'no clean stop: killed mid-download');
    const part = filesUnder(path.join(w.dir, 'cache')).find((f) => f.endsWith('.img.part'));
    assert.ok(part, 'a resumable .part is left');
    const partBytes = statSync(part).size;
    assert.ok(partBytes > 0 && partBytes < size, `${partBytes} bytes on disk`);

    w.mirror.clearFaults();
    const restarted = w.cliInContainer('box-b', 'daemon');
    const started = await restarted.waitForEvent('daemon.started', { timeoutMs: 10_000 });
    assert.equal(started.pid, 1, 'PID 1 again, as in the killed container');
    const live = w.cli('daemon');
    assert.equal((await live.exited).code, 3, 'a second live instance is still refused');
    assert.match(live.stderr, /^cloudimg-sync: ALREADY_RUNNING: another cloudimg-sync \(1@box-b, since \d{4}-\d\d-\d\dT[\d:.]+Z\) holds .*cloudimg-sync\.lock \(fix: /);

    const finished = await restarted.waitForEvent('sync.run.finished');
    assert.equal(finished.result, 'ok', restarted.transcript());
    const resumed = imageRequests(w.mirror)[1]!;
    assert.equal(resumed.headers.range, `bytes=${partBytes}-`, 'the .part of the killed instance is resumed');
    const image = w.mirror.published({ channel: 'release' })[0]!;
    assert.equal(sha256Of(path.join(w.dir, 'images', 'noble', image.serial, image.fileName)), image.sha256);
    assert.equal((await restarted.stop()).code, 0, restarted.transcript());
  });

  test('/healthz answers 200 after a successful cycle, 503 with the reason once cycles fail, 200 again after recovery', async () => {
    const w = await createWorld({}, { schedule: '* * * * * *' });
    const daemon = w.daemon();
    const port = await healthPort(daemon);
    await daemon.waitForEvent('sync.run.finished', { where: (l) => l.result === 'ok' });
    const healthy = await getJson(`http://127.0.0.1:${port}/healthz`);
    assert.equal(healthy.status, 200);
    assert.equal(healthy.body.status, 'ok');

    w.mirror.inject({ path: '/releases/noble/', fault: 'status', status: 500 });
    const failed = await daemon.waitForEvent('sync.run.finished', { where: (l) => l.result === 'failed' });
    const sick = await getJson(`http://127.0.0.1:${port}/healthz`);
    assert.equal(sick.status, 503);
    assert.equal(sick.body.status, 'failing');
    assert.match(String(sick.body.reason), new RegExp(`last cycle \\(run ${String(failed.runId)}\\) failed at .*HTTP_500`));
    assert.ok(daemon.events('daemon.retry.scheduled').length >= 1);

    w.mirror.clearFaults();
    await daemon.waitForEvent('sync.run.finished', { where: (l) => l.result === 'ok' && (l.runId as number) > (failed.runId as number) });
    assert.equal((await getJson(`http://127.0.0.1:${port}/healthz`)).status, 200);
    assert.equal((await daemon.stop()).code, 0, 'failed cycles never made the daemon exit');
  });

  test('/metrics counts each image byte once across a connection reset, and reports runs and state', async () => {
    const size = 512 * 1024;
    const w = await createWorld({ imageSizeBytes: size });
    w.mirror.inject({ path: /\.img$/, fault: 'reset', afterBytes: 200_000, times: 1 });
    const daemon = w.daemon();
    const port = await healthPort(daemon);
    assert.equal((await daemon.waitForEvent('sync.run.finished')).result, 'ok', daemon.transcript());
    const requests = imageRequests(w.mirror);
    assert.equal(requests.length, 2);
    assert.equal(requests[1]!.status, 206);

    const m = await scrape(port);
    assert.equal(m.get('cloudimg_sync_download_bytes_total'), size, 'the reset prefix and the resumed rest, each once');
    assert.equal(m.get('cloudimg_sync_upload_bytes_total{target="local"}'), size);
    assert.equal(m.get('cloudimg_sync_runs_total{result="ok"}'), 1);
    assert.equal(m.get('cloudimg_sync_runs_total{result="failed"}'), 0);
    assert.ok(Math.abs(m.get('cloudimg_sync_last_success_timestamp_seconds')! - Date.now() / 1000) < 60);
    assert.equal(m.get('cloudimg_sync_images{state="verified"}'), 1);
    assert.equal(m.get('cloudimg_sync_publications{target="local",state="published"}'), 1);
    assert.equal(m.get('cloudimg_sync_download_duration_seconds_count'), 1);
    assert.equal(m.get('cloudimg_sync_upload_duration_seconds_count{target="local"}'), 1);
    const serial = w.mirror.published()[0]!.serial;
    const serialMs = Date.UTC(Number(serial.slice(0, 4)), Number(serial.slice(4, 6)) - 1, Number(serial.slice(6, 8)));
    const age = m.get('cloudimg_sync_newest_serial_age_seconds{channel="release",variant="server",release="noble",arch="amd64",target="local"}');
    assert.ok(age !== undefined && Math.abs(age - Math.max(0, (Date.now() - serialMs) / 1000)) < 60, `serial age ${age}`);
    assert.equal((await daemon.stop()).code, 0);
  });

  test('SIGHUP reloads a valid config, and keeps the running one when the new one is invalid', async () => {
    const w = await createWorld({}, { runOnStart: false });
    const daemon = w.daemon();
    await daemon.waitForEvent('daemon.started');

    w.writeConfig({ runOnStart: false, schedule: '* * * * * *' });
    daemon.child.kill('SIGHUP');
    const reloaded = await daemon.waitForEvent('daemon.reloaded');
    assert.deepEqual(reloaded.changed, ['schedule']);
    await daemon.waitForEvent('sync.run.finished', { where: (l) => l.result === 'ok' });

    w.writeConfig({ runOnStart: false, schedule: 'every now and then' });
    daemon.child.kill('SIGHUP');
    const refused = await daemon.waitForEvent('daemon.reload.failed');
    assert.match(String(refused.err), /CONFIG_INVALID: .*schedule/);
    const cyclesBefore = daemon.events('sync.run.finished').length;
    await daemon.waitForEvent('sync.run.finished', { count: cyclesBefore + 1 });
    assert.equal((await daemon.stop()).code, 0, 'the old schedule keeps running');
  });

  test('idle RSS stays small after a cycle', async (t) => {
    const w = await createWorld({}, { runOnStart: true });
    const daemon = w.daemon();
    const port = await healthPort(daemon);
    assert.equal((await daemon.waitForEvent('sync.run.finished')).result, 'ok');
    await scrape(port);
    await sleep(3_000);
    const rssKiB = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${daemon.pid}/status`, 'utf8'))?.[1]);
    t.diagnostic(`idle RSS under tsx after one cycle: ${(rssKiB / 1024).toFixed(1)} MiB`);
    // tsx (esbuild) adds ~40 MiB over the built dist/; the container test measures dist/ alone.
    assert.ok(rssKiB < 200 * 1024, `idle RSS ${rssKiB} KiB`);
    assert.equal((await daemon.stop()).code, 0);
  });
});

describe('operator commands: history and check', () => {
  test('history lists runs newest first with results and counts, as a table and as JSON', async () => {
    const w = await createWorld();
    const once = w.cli('sync', '--once');
    assert.equal((await once.exited).code, 0, once.stderr);
    w.mirror.inject({ path: '/releases/noble/', fault: 'status', status: 500 });
    assert.equal((await w.cli('sync', '--once').exited).code, 1);

    const json = w.cli('history', '--json', '--limit', '5');
    assert.equal((await json.exited).code, 0, json.stderr);
    const runs = (JSON.parse(json.stdout) as { runs: Array<Record<string, unknown>> }).runs;
    assert.deepEqual(runs.map((r) => [r.id, r.result, r.downloaded]), [[2, 'failed', 0], [1, 'ok', 1]]);
    assert.match(String(runs[0]!.error), /HTTP_500/);

    const table = w.cli('history', '--limit', '1');
    assert.equal((await table.exited).code, 0);
    const lines = table.stdout.trim().split('\n');
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, /^RUN\s+STARTED\s+DURATION\s+RESULT\s+NEW\s+DOWN\s+PUB\s+RETIRED\s+FAILED\s+BYTES\s+ERROR$/);
    assert.match(lines[1]!, /^2\s+\S+Z\s+\d+s\s+failed\s+0\s+0\s+0\s+0\s+1\s+.*HTTP_500/);
  });

  test('check passes (exit 0) when config, directories, source, keyring and targets are usable', async () => {
    const w = await createWorld();
    const check = w.cli('check', '--json');
    assert.equal((await check.exited).code, 0, check.stdout + check.stderr);
    const report = JSON.parse(check.stdout) as { ok: boolean; checks: Array<{ name: string; ok: boolean; detail: string }> };
    assert.deepEqual(report.checks.map((c) => [c.name, c.ok]), [
      ['config', true], ['stateDir', true], ['cacheDir', true], ['source', true], ['keyring', true], ['target:local', true],
    ]);
    assert.match(report.checks.find((c) => c.name === 'source')!.detail, /reachable \(HTTP 200/);
  });

  test('check fails (exit 1) naming what is wrong: an unreachable source, a target that is not writable', async () => {
    const w = await createWorld();
    const blocked = path.join(w.dir, 'not-a-dir');
    writeFileSync(blocked, 'a file where the target directory should be');
    w.writeConfig({
      source: { url: 'http://127.0.0.1:9/', keyring: w.mirror.keyringPath },
      targets: [{ name: 'local', type: 'directory', path: path.join(blocked, 'images') }],
    });
    const check = w.cli('check');
    assert.equal((await check.exited).code, 1);
    assert.match(check.stdout, /^FAIL\s+source\s+.*ECONNREFUSED/m);
    assert.match(check.stdout, /^FAIL\s+target:local\s+/m);
    assert.match(check.stdout, /^ok\s+stateDir\s+/m);
  });

  test('check rejects an invalid config with exit code 2 and the key at fault', async () => {
    const w = await createWorld();
    w.writeConfig({ health: { port: 'ninety' } });
    const check = w.cli('check');
    assert.equal((await check.exited).code, 2);
    assert.match(check.stderr, /CONFIG_INVALID: .*health\.port/);
  });
});

describeWithOpenStack('daemon and sync --once publishing to the real Keystone+Glance', openstack, (os) => {
  const run = randomUUID().slice(0, 8);
  let session: KeystoneSession;
  let glance: GlanceClient;
  /** Target names used here: their images are deleted at the end. */
  const names: string[] = [];

  before(() => {
    session = new KeystoneSession(resolveAuthSettings({ env: os.env, files: new Map(), cwd: '/', homeDir: '/nonexistent' }));
    glance = new GlanceClient(session);
  });
  after(async () => {
    for (const name of names) {
      for (const image of await glance.findImages({ [PROP.target]: name }, { includeHidden: true })) await glance.deleteImage(image.id);
    }
    await session.close();
  });

  function targetName(role: string): string {
    const name = `d-${run}-${role}`;
    names.push(name);
    return name;
  }

  function imagesOf(name: string) {
    return glance.findImages({ [PROP.target]: name }, { includeHidden: true });
  }

  const eventNames = (p: CliProcess) => new Set(p.lines.map((l) => l.event).filter((e): e is string => e !== undefined));

  test('the daemon logs every event sync --once logs for the same cycle, the OpenStack clients\' included; its extras are daemon.* only', async () => {
    const w = await createWorld({}, {}, os.env);
    // The same cycle twice from fresh state: each run its own state, cache and Glance target (nothing to adopt).
    const configFor = (role: string) => ({
      stateDir: path.join(w.dir, `state-${role}`), cacheDir: path.join(w.dir, `cache-${role}`), targets: [{ name: targetName(role), type: 'glance' }],
    });
    w.writeConfig(configFor('once'));
    const once = w.cli('--log-level', 'debug', 'sync', '--once');
    assert.equal((await once.exited).code, 0, once.transcript());
    w.writeConfig(configFor('daemon'));
    const daemon = w.cli('--log-level', 'debug', 'daemon');
    assert.equal((await daemon.waitForEvent('sync.run.finished')).result, 'ok', daemon.transcript());
    assert.equal((await daemon.stop()).code, 0, daemon.transcript());

    const fromOnce = eventNames(once);
    const fromDaemon = eventNames(daemon);
    for (const event of ['keystone.auth.done', 'glance.image.created', 'glance.upload.done', 'glance.image.verified', 'glance.latest.moved', 'image.publish.done']) {
      assert.ok(fromOnce.has(event), `sync --once logged ${event}: the comparison covers the OpenStack clients`);
    }
    assert.deepEqual([...fromOnce].filter((e) => !fromDaemon.has(e)), [], 'events of sync --once missing from the daemon\'s log');
    assert.deepEqual([...fromDaemon].filter((e) => !fromOnce.has(e) && !e.startsWith('daemon.')), [], 'the daemon\'s own events are daemon.*');
  });

  test('SIGTERM during a Glance upload: info image.publish.aborted, run interrupted, no failure, nothing left in Glance; the next run publishes', async () => {
    const name = targetName('sigterm');
    // method stream: the upload to Glance lasts as long as the throttled download (512 KiB at 64 KiB/s: 8 s).
    const w = await createWorld({}, { targets: [{ name, type: 'glance', method: 'stream' }] }, os.env);
    w.mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: 64 * 1024 });
    const daemon = w.daemon();
    const imageId = String((await daemon.waitForEvent('glance.image.created')).imageId);
    const deadline = Date.now() + 10_000;
    while ((await glance.getImage(imageId)).status !== 'saving') {
      assert.ok(Date.now() < deadline, `image ${imageId} never started saving\n${daemon.transcript()}`);
      await sleep(50);
    }
    assert.equal((await daemon.stop('SIGTERM')).code, 0, daemon.transcript());

    const aborted = daemon.events('image.publish.aborted');
    assert.deepEqual(aborted.map((l) => [l.level, l.target]), [['info', name]], daemon.transcript());
    assert.deepEqual(daemon.events('image.publish.failed'), [], 'a shutdown is not a failed publication (image_failures_total{step="publish"} counts those)');
    assert.deepEqual(daemon.lines.filter((l) => l.level !== 'info' && l.level !== 'debug').map((l) => l.event), [], 'no warning or error on a clean shutdown');
    assert.deepEqual(daemon.events('glance.image.discarded').map((l) => [l.level, l.imageId]), [['info', imageId]], 'the hidden image was deleted at once');
    const finished = daemon.events('sync.run.finished');
    assert.deepEqual(finished.map((l) => [l.level, l.result, l.failed, l.published]), [['info', 'interrupted', 0, 0]]);
    // The daemon's /metrics is fed by these events through its log tap (and is gone once it stopped): the same
    // SyncMetrics, given the lines this daemon logged, counts no failure.
    const metrics = new SyncMetrics(() => undefined);
    for (const line of daemon.lines) if (isEventName(line.event)) metrics.observe(line as EventRecord);
    const samples = (await metrics.registry.getMetricsAsJSON()).flatMap((m) => m.values.map((v) => ({ name: m.name, labels: v.labels, value: v.value })));
    assert.deepEqual(samples.filter((v) => v.name === 'cloudimg_sync_image_failures_total' && v.value !== 0), [], 'image_failures_total stays 0');
    assert.equal(samples.find((v) => v.name === 'cloudimg_sync_runs_total' && v.labels.result === 'interrupted')?.value, 1);

    const history = w.cli('history', '--json');
    assert.equal((await history.exited).code, 0, history.stderr);
    const runs = (JSON.parse(history.stdout) as { runs: Array<Record<string, unknown>> }).runs;
    assert.deepEqual(runs.map((r) => [r.result, r.failed, r.error]), [['interrupted', 0, null]]);
    const status = w.cli('status', '--json');
    assert.equal((await status.exited).code, 0, status.stderr);
    const images = (JSON.parse(status.stdout) as { images: Array<{ targets: Record<string, { state: string; error: string | null }> }> }).images;
    assert.deepEqual(images.map((i) => i.targets[name]), [{ state: 'publishing', imageId, error: null }], 'not failed: published again next run');

    // What the target had not revealed is removed at once, not left hidden for a later run.
    assert.deepEqual(await imagesOf(name), [], 'nothing of ours left in Glance');
    await assert.rejects(glance.getImage(imageId), (err: unknown) => err instanceof OpenStackError && err.status === 404);

    w.mirror.clearFaults();
    const next = w.cli('sync', '--once');
    assert.equal((await next.exited).code, 0, next.transcript());
    const published = await imagesOf(name);
    assert.deepEqual(published.map((i) => [i.status, i.os_hidden]), [['active', false]]);
  });
});
