import { loadConfig } from '../config/load.js';
import { StateStore, type RunFindings } from '../state/store.js';
import type { GlobalOptions } from './context.js';

export interface StatusImage {
  release: string;
  version: string;
  arch: string;
  serial: string;
  channel: string;
  variant: string;
  state: string;
  sha256: string;
  error: string | null;
  targets: Record<string, { state: string; imageId: string | null; error: string | null }>;
}

export interface StatusReport extends RunFindings {
  images: StatusImage[];
  /** The last finished cycle the findings come from. */
  lastRun?: { id: number; result: string; finishedAt: string | null };
}

/**
 * `status`: images and their states, and what the last finished cycle found missing or past end of life;
 * read from state without taking the lock (a running daemon is fine).
 */
export function statusCommand(options: GlobalOptions): StatusReport {
  const config = loadConfig(options.config);
  const store = StateStore.open(config.stateDir);
  try {
    const images = store.listImages().map((r) => ({
      release: r.release, version: r.version, arch: r.arch, serial: r.serial, channel: r.channel, variant: r.variant,
      state: r.state, sha256: r.sha256, error: r.error,
      targets: Object.fromEntries(Object.values(r.publications).map((p) => [p.target, { state: p.state, imageId: p.ref, error: p.error }])),
    }));
    const last = store.listRuns(20).find((r) => r.result !== 'running' && r.result !== 'aborted' && r.result !== 'interrupted');
    return {
      images, incomplete: last?.incomplete ?? [], eol: last?.eol ?? [],
      ...(last ? { lastRun: { id: last.id, result: last.result, finishedAt: last.finishedAt } } : {}),
    };
  } finally {
    store.close();
  }
}

export function formatStatus({ images, incomplete = [], eol = [], lastRun }: Partial<StatusReport> & { images: StatusImage[] }): string {
  const lines: string[] = [];
  if (images.length === 0) {
    lines.push('no images recorded yet: run `cloudimg-sync sync --once`');
  } else {
    const rows = images.map((i) => [
      `${i.channel}/${i.variant}`, i.release, i.version, i.arch, i.serial, i.state,
      Object.entries(i.targets).map(([t, p]) => `${t}:${p.state}`).join(' ') || '-',
    ]);
    const header = ['STREAM', 'RELEASE', 'VERSION', 'ARCH', 'SERIAL', 'STATE', 'TARGETS'];
    const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
    lines.push(...[header, ...rows].map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()));
  }
  const run = lastRun ? ` (run ${lastRun.id}, ${lastRun.result})` : '';
  for (const i of incomplete) lines.push(`incomplete  ${i.stream} ${i.release} ${i.arch}: ${i.reason}${run}`);
  for (const e of eol) {
    lines.push(`eol         ${e.stream} ${e.release}: past end of life${e.eol ? ` (${e.eol})` : ''}${e.gone ? ', gone upstream' : ''}${e.imported ? '' : ', dailies not imported'}${run}`);
  }
  return lines.join('\n');
}
