/**
 * Progress bars on a terminal for `sync --once`, drawn from the log events alone: image.download.* for
 * downloads (bytes, rate, ETA), image.publish.* for publications (bytes, rate, ETA from
 * image.publish.progress where the target reports it, else elapsed time). One line on stderr, redrawn in
 * place between log lines.
 */
import type { EventRecord } from '../events.js';
import type { LiveLine, LogRecord } from '../log.js';

interface Transfer {
  kind: 'download' | 'publish';
  label: string;
  startedMs: number;
  /** Bytes already on disk when this process's transfer began (a resumed .part). */
  baseBytes: number;
  bytes: number;
  totalBytes?: number;
  /** Bytes per second as of the last progress event, and when that was. */
  rate?: number;
  lastEventMs?: number;
}

export class ProgressBars implements LiveLine {
  private readonly transfers = new Map<string, Transfer>();
  private drawn = false;
  private ticker: NodeJS.Timeout | undefined;

  constructor(
    private readonly out: Pick<NodeJS.WriteStream, 'write'> & { columns?: number } = process.stderr,
    private readonly now: () => number = Date.now,
  ) {}

  /** The log tap. */
  readonly observe = (record: EventRecord): void => {
    const key = `${record.channel}/${record.variant}/${record.release}/${record.arch}/${record.serial}`;
    const label = `${record.release ?? '?'} ${record.arch ?? '?'} ${record.serial ?? '?'}`;
    switch (record.event) {
      case 'image.download.started':
        this.transfers.set(`d:${key}`, { kind: 'download', label, startedMs: this.now(), baseBytes: 0, bytes: 0 });
        break;
      case 'http.download.resume': {
        const t = this.transfers.get(`d:${key}`);
        if (t && typeof record.fromBytes === 'number') {
          t.baseBytes = record.fromBytes;
          t.bytes = record.fromBytes;
          t.startedMs = this.now();
          if (typeof record.totalBytes === 'number') t.totalBytes = record.totalBytes;
        }
        break;
      }
      case 'image.download.progress':
      case 'image.publish.progress': {
        const t = this.transfers.get(record.event === 'image.download.progress' ? `d:${key}` : `p:${key}:${String(record.target)}`);
        if (t && typeof record.bytes === 'number') {
          if (record.bytes < t.baseBytes) { t.baseBytes = 0; t.startedMs = this.now(); }
          t.bytes = record.bytes;
          if (typeof record.totalBytes === 'number') t.totalBytes = record.totalBytes;
          t.lastEventMs = this.now();
          t.rate = ((t.bytes - t.baseBytes) * 1000) / Math.max(1, t.lastEventMs - t.startedMs);
        }
        break;
      }
      case 'image.download.done':
      case 'image.download.failed':
      case 'image.download.aborted':
      case 'image.verify.failed':
        this.transfers.delete(`d:${key}`);
        break;
      case 'image.publish.started':
        this.transfers.set(`p:${key}:${String(record.target)}`, {
          kind: 'publish', label: `${label} -> ${String(record.target)}`, startedMs: this.now(), baseBytes: 0, bytes: 0,
          totalBytes: typeof record.bytes === 'number' ? record.bytes : undefined,
        });
        break;
      case 'image.publish.done':
      case 'image.publish.failed':
        this.transfers.delete(`p:${key}:${String(record.target)}`);
        break;
      case 'sync.run.finished':
        this.transfers.clear();
        break;
    }
    this.keepTicking();
  };

  shows(record: LogRecord): boolean {
    return record.event === 'image.download.progress' || record.event === 'image.publish.progress';
  }

  clear(): void {
    if (!this.drawn) return;
    this.out.write('\r\x1b[K');
    this.drawn = false;
  }

  redraw(): void {
    const line = this.render();
    if (!line && !this.drawn) return;
    const width = (this.out.columns && this.out.columns > 20 ? this.out.columns : 100) - 1;
    this.out.write(`\r\x1b[K${line.slice(0, width)}`);
    this.drawn = line !== '';
  }

  /** The current line: the newest transfer in flight (the sync loop moves one image at a time). */
  render(): string {
    const t = [...this.transfers.values()].at(-1);
    if (!t) return '';
    const elapsedMs = Math.max(1, this.now() - t.startedMs);
    if (t.kind === 'publish' && t.rate === undefined) {
      return `${t.label}  publishing${t.totalBytes !== undefined ? ` ${formatBytes(t.totalBytes)}` : ''}  ${formatDuration(elapsedMs)}`;
    }
    const parts = [t.label];
    if (t.rate === undefined) return `${t.label}  downloading${t.bytes > 0 ? ` from ${formatBytes(t.bytes)}` : ''}  ${formatDuration(elapsedMs)}`;
    if (t.kind === 'publish') parts.push('uploading');
    const rate = t.rate;
    if (t.totalBytes) {
      const fraction = Math.min(1, t.bytes / t.totalBytes);
      parts.push(`[${bar(fraction, 24)}] ${(fraction * 100).toFixed(0).padStart(3)}%`, `${formatBytes(t.bytes)}/${formatBytes(t.totalBytes)}`);
    } else {
      parts.push(formatBytes(t.bytes));
    }
    parts.push(`${formatBytes(rate)}/s`);
    if (t.totalBytes && rate > 0) {
      const sinceEventMs = this.now() - (t.lastEventMs ?? this.now());
      parts.push(`ETA ${formatDuration(Math.max(0, ((t.totalBytes - t.bytes) / rate) * 1000 - sinceEventMs))}`);
    }
    return parts.join('  ');
  }

  /** Publications log nothing while they run: tick once a second so the elapsed time moves. */
  private keepTicking(): void {
    if (this.transfers.size > 0 && !this.ticker) {
      this.ticker = setInterval(() => this.redraw(), 1_000);
      this.ticker.unref();
    } else if (this.transfers.size === 0 && this.ticker) {
      clearInterval(this.ticker);
      this.ticker = undefined;
    }
  }
}

function bar(fraction: number, width: number): string {
  const full = Math.round(fraction * width);
  return '#'.repeat(full) + '.'.repeat(width - full);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}` : `${m}:${String(s).padStart(2, '0')}`;
}
