import { loadConfig } from '../config/load.js';
import { StateStore } from '../state/store.js';
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

/** `status`: images and their states, read from state without taking the lock (a running daemon is fine). */
export function statusCommand(options: GlobalOptions): { images: StatusImage[] } {
  const config = loadConfig(options.config);
  const store = StateStore.open(config.stateDir);
  try {
    const images = store.listImages().map((r) => ({
      release: r.release, version: r.version, arch: r.arch, serial: r.serial, channel: r.channel, variant: r.variant,
      state: r.state, sha256: r.sha256, error: r.error,
      targets: Object.fromEntries(Object.values(r.publications).map((p) => [p.target, { state: p.state, imageId: p.ref, error: p.error }])),
    }));
    return { images };
  } finally {
    store.close();
  }
}

export function formatStatus({ images }: { images: StatusImage[] }): string {
  if (images.length === 0) return 'no images recorded yet: run `cloudimg-sync sync --once`';
  const rows = images.map((i) => [
    i.release, i.version, i.arch, i.serial, i.state,
    Object.entries(i.targets).map(([t, p]) => `${t}:${p.state}`).join(' ') || '-',
  ]);
  const header = ['RELEASE', 'VERSION', 'ARCH', 'SERIAL', 'STATE', 'TARGETS'];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  return [header, ...rows].map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}
