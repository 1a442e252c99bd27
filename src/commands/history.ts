import { loadConfig } from '../config/load.js';
import { formatBytes } from '../daemon/progress-bars.js';
import type { RunRecord } from '../state/store.js';
import { StateStore } from '../state/store.js';
import type { GlobalOptions } from './context.js';

/** `history`: the most recent runs, newest first, read from state without the lock (a running daemon is fine). */
export function historyCommand(options: GlobalOptions, { limit = 20 }: { limit?: number } = {}): { runs: RunRecord[] } {
  const config = loadConfig(options.config);
  const store = StateStore.open(config.stateDir);
  try {
    return { runs: store.listRuns(limit) };
  } finally {
    store.close();
  }
}

export function formatHistory({ runs }: { runs: RunRecord[] }): string {
  if (runs.length === 0) return 'no runs recorded yet: run `cloudimg-sync sync --once` or start the daemon';
  const header = ['RUN', 'STARTED', 'DURATION', 'RESULT', 'NEW', 'DOWN', 'PUB', 'RETIRED', 'FAILED', 'BYTES', 'ERROR'];
  const rows = runs.map((r) => [
    String(r.id), r.startedAt.replace(/\.\d+Z$/, 'Z'), duration(r), r.result, String(r.discovered), String(r.downloaded),
    String(r.published), String(r.retired), String(r.failed), formatBytes(r.bytesDown), r.error ?? '',
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  return [header, ...rows].map((row) => row.map((cell, c) => (c === row.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ').trimEnd()).join('\n');
}

function duration(r: RunRecord): string {
  if (!r.finishedAt) return r.result === 'running' ? 'running' : '-';
  const s = Math.round((Date.parse(r.finishedAt) - Date.parse(r.startedAt)) / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}
