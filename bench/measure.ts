/**
 * Measuring tools of the benchmark: run a process and take its wall time and peak RSS, bundle a
 * TypeScript entry point into plain JavaScript, count the bytes on the wire, and print tables.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

const TIME = '/usr/bin/time';
export const HAVE_GNU_TIME = existsSync(TIME) && spawnSync(TIME, ['-f', '%M', 'true']).status === 0;

export interface ProcessRun {
  wallMs: number;
  /** Peak resident set of the process (the largest of its children for a shell line), KiB. */
  maxRssKiB: number;
  /** User + system CPU time of the process and its children, ms (only with GNU time). */
  cpuMs?: number;
  /** The user part of it. */
  userMs?: number;
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Reads VmHWM (peak RSS, KiB) of a running process; undefined once it is gone. */
async function peakRssKiB(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(status);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs `command args` to completion. Peak RSS comes from GNU time (`/usr/bin/time -f %M`, exact) when it
 * is installed, otherwise from polling /proc/PID/status VmHWM every 10 ms (may miss the last few ms).
 */
export async function runMeasured(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<ProcessRun> {
  const rssDir = HAVE_GNU_TIME ? await mkdtemp(path.join(tmpdir(), 'cloudimg-bench-time-')) : undefined;
  const rssFile = rssDir ? path.join(rssDir, 'rss') : undefined;
  const [file, argv] = rssFile ? [TIME, ['-f', '%M %U %S', '-o', rssFile, command, ...args]] : [command, args];
  const startedMs = performance.now();
  const child = spawn(file, argv, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => err.push(d));
  let polledKiB = 0;
  const poller = rssFile || child.pid === undefined ? undefined : setInterval(() => {
    void peakRssKiB(child.pid as number).then((kib) => { if (kib !== undefined) polledKiB = Math.max(polledKiB, kib); });
  }, 10);
  const exitCode = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code ?? 1));
  });
  const wallMs = performance.now() - startedMs;
  if (poller) clearInterval(poller);
  let maxRssKiB = polledKiB;
  let cpuMs: number | undefined;
  let userMs: number | undefined;
  if (rssFile && rssDir) {
    const text = await readFile(rssFile, 'utf8').catch(() => '');
    // GNU time prefixes "Command exited with non-zero status N" on failure; the figures are the last line.
    const [rss, user, sys] = (text.trim().split('\n').at(-1) ?? '').split(' ').map(Number);
    maxRssKiB = rss || 0;
    cpuMs = user !== undefined && sys !== undefined && Number.isFinite(user + sys) ? (user + sys) * 1000 : undefined;
    userMs = cpuMs !== undefined ? (user as number) * 1000 : undefined;
    await rm(rssDir, { recursive: true, force: true });
  }
  return { wallMs, maxRssKiB, cpuMs, userMs, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), exitCode };
}

/** Like runMeasured, but a non-zero exit is an error carrying the process's stderr. */
export async function runChecked(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<ProcessRun> {
  const run = await runMeasured(command, args, options);
  if (run.exitCode !== 0) {
    const tail = (run.stderr || run.stdout).trim().split('\n').slice(-5).join('\n');
    throw new Error(`${command} ${args.join(' ')} exited ${run.exitCode}: ${tail}`);
  }
  return run;
}

/** Flushes dirty pages so that one run's writeback does not land in the next run's time. */
export function flushDisks(): void {
  spawnSync('sync');
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/**
 * Bundles a TypeScript entry point (npm packages left as imports) into `outDir`, so it runs under plain
 * `node` (the bench's download child). `outDir` must sit inside this repository, whose package.json the
 * bundled modules find above it. The CLI itself is measured as `npm run build` makes it (scripts/build.ts).
 */
export async function bundle(entry: string, outDir: string, name: string): Promise<string> {
  const { build } = await import('esbuild');
  // Code splitting keeps dynamic imports lazy.
  await build({
    entryPoints: [entry], outdir: outDir, entryNames: name, outExtension: { '.js': '.mjs' }, splitting: true,
    bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'silent', sourcemap: false,
  });
  return path.join(outDir, `${name}.mjs`);
}

/** A TCP relay in front of a server that counts every byte each way: the exact cost on the wire. */
export interface WireCounter {
  url: string;
  /** Bytes the server sent (status lines, headers, bodies). */
  bytesDown: number;
  /** Bytes the client sent (request lines and headers). */
  bytesUp: number;
  connections: number;
  close(): Promise<void>;
}

export async function startWireCounter(targetPort: number): Promise<WireCounter> {
  const sockets = new Set<Socket>();
  const counter: WireCounter = {
    url: '', bytesDown: 0, bytesUp: 0, connections: 0,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
  const server = createServer((client) => {
    counter.connections++;
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => { client.destroy(); upstream.destroy(); });
    }
    client.on('data', (d: Buffer) => { counter.bytesUp += d.length; });
    upstream.on('data', (d: Buffer) => { counter.bytesDown += d.length; });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  counter.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return counter;
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: MiB, mib: MiB, g: GiB, gib: GiB };

/** `1GiB`, `256M`, `65536` -> bytes. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new Error(`cannot read size ${JSON.stringify(text)}; write e.g. 64MiB, 1GiB`);
  return Math.round(Number(m[1]) * unit);
}

export function formatSize(bytes: number): string {
  if (bytes >= GiB && bytes % GiB === 0) return `${bytes / GiB} GiB`;
  if (bytes >= MiB) return `${+(bytes / MiB).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${+(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

export const seconds = (ms: number): string => (ms / 1000).toFixed(2);
export const mibOfKiB = (kib: number): string => (kib ? (kib / 1024).toFixed(1) : '-');
export const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(2)}x` : '-');
export const throughput = (bytes: number, ms: number): string => (ms > 0 ? (bytes / MiB / (ms / 1000)).toFixed(0) : '-');

/** A plain text table: first row is the header, columns padded, numbers right-aligned. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => { widths[i] = Math.max(widths[i] ?? 0, cell.length); });
  const numeric = (s: string) => /^[-+]?[\d.]+(x| s| MiB| KiB| B)?$/.test(s) || s === '-';
  const line = (row: readonly string[]) =>
    row.map((cell, i) => (i > 0 && numeric(cell) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  const [header, ...body] = rows;
  if (!header) return '';
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** `met` / `MISSED` for a goal of `value <= limit`; a report, never an assertion. */
export const verdict = (value: number, limit: number): string => (value <= limit ? 'met' : 'MISSED');

/** CPU time (user + system) a running process has used so far, ms; undefined if it cannot be read. */
export async function processCpuMs(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces: utime is the 12th, stime the 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    clockTicksPerSecond ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
    return Number.isFinite(ticks) ? (ticks * 1000) / clockTicksPerSecond : undefined;
  } catch {
    return undefined;
  }
}

/** Units of /proc/PID/stat times; asked once, when first needed. */
let clockTicksPerSecond: number | undefined;
