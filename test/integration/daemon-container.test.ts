/**
 * The container image without a Docker engine: the Dockerfile's stages are replayed in temp directories
 * (context per .dockerignore, the deps stage's production-only `npm ci` for real, the build stage's
 * `npm run build` for real), the runtime stage is assembled from its COPY lines, and the result must
 * start: `--help`, `check` with the shipped keyring, and a daemon cycle against the fixture mirror.
 * Slow (the production install compiles better-sqlite3 when no prebuilt binary can be fetched).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { startMirror, type Mirror } from '../fixtures/mirror/index.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const dockerfile = readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');

interface Instruction { op: string; args: string }
interface Stage { from: string; name: string; steps: Instruction[] }

/** Dockerfile -> stages of instructions (continuation lines joined, comments dropped). */
function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const logical = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of logical) {
    const [, op = '', rest = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const upper = op.toUpperCase();
    if (upper === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
      stages.push({ from: m[1]!, name: m[2] ?? String(stages.length), steps: [] });
    } else if (stages.length === 0 && upper === 'ARG') {
      const [k, v = ''] = rest.split('=');
      args[k!] = v;
    } else {
      stages.at(-1)!.steps.push({ op: upper, args: rest });
    }
  }
  return { args, stages };
}

/** .dockerignore, the subset of its syntax we use: paths (with their subtrees) and `*` globs. */
function dockerignore(root: string): (relPath: string) => boolean {
  const patterns = readFileSync(path.join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const matchers = patterns.map((p) => {
    if (!p.includes('*')) return (rel: string) => rel === p || rel.startsWith(`${p}/`);
    const re = new RegExp(`^${p.replace(/^\*\*\//, '').replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);
    return (rel: string) => re.test(p.startsWith('**/') ? path.basename(rel) : rel);
  });
  return (rel) => matchers.some((m) => m(rel));
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) {
  const res = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  assert.equal(res.status, 0, `${cmd} ${args.join(' ')} in ${cwd} failed:\n${res.stdout}\n${res.stderr}`);
  return res;
}

const { args: buildArgs, stages } = parseDockerfile(dockerfile);
const runtime = stages.at(-1)!;
const step = (stage: Stage, op: string) => stage.steps.filter((s) => s.op === op).map((s) => s.args);

describe('Dockerfile', () => {
  test('a slim Node 20 runtime, non-root, with state and cache volumes, a /healthz HEALTHCHECK and `daemon` by default', () => {
    assert.equal(buildArgs.NODE_VERSION, '20');
    assert.equal(runtime.from, 'node:${NODE_VERSION}-bookworm-slim');
    assert.ok(stages.length >= 2, 'multi-stage');
    assert.deepEqual(step(runtime, 'USER'), ['cloudimg-sync']);
    assert.deepEqual(step(runtime, 'VOLUME'), ['["/var/lib/cloudimg-sync", "/var/cache/cloudimg-sync"]']);
    assert.match(step(runtime, 'HEALTHCHECK')[0]!, /CMD .*http:\/\/127\.0\.0\.1:9465\/healthz/);
    assert.deepEqual(step(runtime, 'ENTRYPOINT'), ['["node", "--max-semi-space-size=1", "/app/dist/cli.js"]']);
    assert.deepEqual(step(runtime, 'CMD'), ['["daemon"]']);
    assert.ok(!step(runtime, 'RUN').some((r) => /npm (ci|install)/.test(r)), 'no install (and no compiler) in the runtime stage');
  });
  test('the runtime has qemu-img (qemu-utils) for glance targets with diskFormat: raw', () => {
    assert.ok(step(runtime, 'RUN').some((r) => /apt-get install -y --no-install-recommends qemu-utils/.test(r)), step(runtime, 'RUN').join('\n'));
  });
});

describe('container runtime stage, replayed without Docker', { timeout: 20 * 60_000 }, () => {
  let work: string;
  let app: string;
  let mirror: Mirror;

  before(() => {
    work = mkdtempSync(path.join(tmpdir(), 'cloudimg-sync-image-'));
    const context = path.join(work, 'context');
    const ignored = dockerignore(REPO);
    cpSync(REPO, context, { recursive: true, filter: (src) => src === REPO || !ignored(path.relative(REPO, src).split(path.sep).join('/')) });
    assert.equal(existsSync(path.join(context, 'node_modules')), false, '.dockerignore keeps node_modules out of the context');

    const stageDirs = new Map<string, string>();
    for (const stage of stages.slice(0, -1)) {
      const dir = path.join(work, 'stage-' + stage.name);
      mkdirSync(dir);
      stageDirs.set(stage.name, dir);
      for (const s of stage.steps) {
        if (s.op === 'COPY') {
          const parts = s.args.split(/\s+/);
          const dest = path.join(dir, parts.pop()!);
          for (const src of parts) cpSync(path.join(context, src), parts.length > 1 || dest.endsWith('/') ? path.join(dest, path.basename(src)) : dest, { recursive: true });
        } else if (s.op === 'RUN') {
          if (/^npm ci(?! .*--omit=dev)/.test(s.args)) {
            // The build stage's full install: the checkout's node_modules stand in (no second 3-minute compile).
            symlinkSync(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'));
          } else {
            run('sh', ['-c', s.args], dir);
          }
        }
      }
    }

    app = path.join(work, 'app');
    mkdirSync(app);
    for (const s of step(runtime, 'COPY')) {
      const from = /^--from=(\S+)\s+(\S+)\s+(\S+)$/.exec(s);
      if (from) {
        cpSync(path.join(stageDirs.get(from[1]!)!, path.relative('/app', from[2]!)), path.join(app, from[3]!), { recursive: true, dereference: true });
      } else {
        const [src, dest] = s.split(/\s+/);
        cpSync(path.join(context, src!), path.join(app, dest!.endsWith('/') ? path.join(dest!, path.basename(src!)) : dest!), { recursive: true });
      }
    }
  });

  before(async () => { mirror = await startMirror(); });
  after(async () => {
    await mirror?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('holds production dependencies only', () => {
    for (const dev of ['typescript', 'tsx', '@types/node']) assert.equal(existsSync(path.join(app, 'node_modules', dev)), false, dev);
    for (const dep of ['better-sqlite3', 'prom-client', 'node-cron', 'pino-pretty']) assert.ok(existsSync(path.join(app, 'node_modules', dep)), dep);
    assert.ok(existsSync(path.join(app, 'dist', 'cli.js')));
  });

  test('`--help` starts and lists the commands', () => {
    const res = run(process.execPath, [path.join(app, 'dist', 'cli.js'), '--help'], work, { ...process.env, NODE_ENV: 'production' });
    for (const command of ['sync', 'daemon', 'status', 'history', 'check']) assert.match(res.stdout, new RegExp(`^  ${command}\\b`, 'm'));
  });

  test('started as the ENTRYPOINT starts it, the CLI runs from the V8 code cache the build made (not compiled again)', () => {
    const entrypoint = JSON.parse(step(runtime, 'ENTRYPOINT')[0]!) as string[];
    const [, ...nodeArgs] = entrypoint.map((a) => (a === '/app/dist/cli.js' ? path.join(app, 'dist', 'cli.js') : a));
    const res = run(process.execPath, [...nodeArgs, '--version'], work, { ...process.env, NODE_ENV: 'production', NODE_DEBUG: 'cloudimg-sync' });
    assert.match(res.stderr, /code cache \S+cloudimg-sync\.cjs\.v8cache: accepted/);
    // The launcher sets the semi-space flag back to V8's default (src/v8-flags.ts): a start without it uses the cache too.
    const plain = run(process.execPath, [path.join(app, 'dist', 'cli.js'), '--version'], work, { ...process.env, NODE_DEBUG: 'cloudimg-sync' });
    assert.match(plain.stderr, /code cache \S+: accepted/);
    // Other V8 flags than the ones it was made with: V8 refuses the cache, the CLI compiles and runs all the same.
    const other = run(process.execPath, ['--no-opt', path.join(app, 'dist', 'cli.js'), '--version'], work, { ...process.env, NODE_DEBUG: 'cloudimg-sync' });
    assert.match(other.stderr, /code cache \S+: rejected/);
    assert.equal(other.stdout, res.stdout);
  });

  test('`check` passes with the shipped keyring against a reachable source', async () => {
    const dir = mkdtempSync(path.join(work, 'check-'));
    const config = path.join(dir, 'config.yaml');
    writeFileSync(config, JSON.stringify({
      source: { url: mirror.url }, stateDir: path.join(dir, 'state'), cacheDir: path.join(dir, 'cache'),
      targets: [{ name: 'local', type: 'directory', path: path.join(dir, 'images') }],
    }));
    // Asynchronously: the mirror answering the source check runs in this process.
    const child = spawn(process.execPath, [path.join(app, 'dist', 'cli.js'), 'check', '--config', config], { cwd: dir, env: { ...process.env, NODE_ENV: 'production' } });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stdout += d.toString(); });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 0, stdout);
    assert.match(stdout, /^ok\s+keyring\s+.*\/keys\/ubuntu-cloudimage-keyring\.asc/m);
    assert.match(stdout, /^ok\s+source\s+/m);
  });

  test('the daemon runs a cycle, answers /healthz, idles at a small RSS and stops on SIGTERM', async (t) => {
    const dir = mkdtempSync(path.join(work, 'daemon-'));
    const config = path.join(dir, 'config.yaml');
    writeFileSync(config, JSON.stringify({
      source: { url: mirror.url, keyring: mirror.keyringPath }, stateDir: path.join(dir, 'state'), cacheDir: path.join(dir, 'cache'),
      targets: [{ name: 'local', type: 'directory', path: path.join(dir, 'images') }], health: { port: 0 },
    }));
    const child = spawn(process.execPath, [path.join(app, 'dist', 'cli.js'), 'daemon', '--config', config], {
      cwd: dir, env: { ...process.env, NODE_ENV: 'production' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: Array<Record<string, unknown>> = [];
    createInterface({ input: child.stdout }).on('line', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 30_000;
      while (!lines.some((l) => l.event === 'sync.run.finished')) {
        assert.ok(Date.now() < deadline && child.exitCode === null, `no cycle finished: ${JSON.stringify(lines)}`);
        await sleep(100);
      }
      assert.equal(lines.find((l) => l.event === 'sync.run.finished')!.result, 'ok');
      const port = Number(lines.find((l) => l.event === 'daemon.health.listening')!.port);
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
      await sleep(3_000);
      const rssKiB = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]);
      t.diagnostic(`idle RSS of the built daemon after one cycle: ${(rssKiB / 1024).toFixed(1)} MiB`);
      assert.ok(rssKiB < 160 * 1024, `idle RSS ${rssKiB} KiB`);
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
