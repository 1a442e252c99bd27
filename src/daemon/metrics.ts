/**
 * Prometheus metrics, fed by the log events (docs/events.md) and, at scrape time, by the state database.
 * Nothing here reaches into the sync loop: what is not in an event or in state is not measured.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { EventRecord } from '../events.js';
import { compareSerials } from '../image.js';
import { IMAGE_STATES } from '../state/transitions.js';
import type { RunRecord, StateStore } from '../state/store.js';

const PREFIX = 'cloudimg_sync_';
const TRANSFER_BUCKETS_SECONDS = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200];

/** The part of state metrics read at scrape time. */
export type StateView = Pick<StateStore, 'listImages' | 'listRuns'>;

/** Bytes of one image download already counted, to count each byte that crossed the network once. */
interface DownloadTally {
  countedBytes: number;
  totalBytes?: number;
  /** False until this process has seen where the download stands (a fresh process resuming a .part). */
  tracked: boolean;
}

export class SyncMetrics {
  readonly registry = new Registry();
  private readonly runs: Counter<'result'>;
  private readonly lastSuccess: Gauge;
  private readonly lastRun: Gauge;
  private readonly cycleRunning: Gauge;
  private readonly downloadBytes: Counter;
  private readonly uploadBytes: Counter<'target'>;
  private readonly downloadSeconds: Histogram;
  private readonly uploadSeconds: Histogram<'target'>;
  private readonly failures: Counter<'step'>;
  private readonly releaseEol: Gauge<'channel' | 'variant' | 'release' | 'gone'>;
  private readonly archMissing: Gauge<'channel' | 'variant' | 'release' | 'arch'>;
  private readonly publicationLag: Gauge<'stream' | 'release' | 'arch' | 'target'>;
  private readonly downloads = new Map<string, DownloadTally>();

  constructor(state: () => StateView | undefined, now: () => number = Date.now) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.runs = new Counter({ name: `${PREFIX}runs_total`, help: 'Sync cycles finished, by result (ok, incomplete, failed, interrupted).', labelNames: ['result'], registers });
    for (const result of ['ok', 'incomplete', 'failed', 'interrupted']) this.runs.inc({ result }, 0);
    this.lastSuccess = new Gauge({ name: `${PREFIX}last_success_timestamp_seconds`, help: 'When the last cycle that succeeded (ok or incomplete) finished (0: never).', registers });
    this.releaseEol = new Gauge({
      name: `${PREFIX}release_eol`, help: 'Configured releases past their end of life, per stream (1; gone="true" when upstream removed them), as of the last cycle.',
      labelNames: ['channel', 'variant', 'release', 'gone'], registers,
    });
    this.archMissing = new Gauge({
      name: `${PREFIX}arch_missing`, help: 'Configured arches with no image in any recent serial upstream (1), as of the last cycle: the run is incomplete.',
      labelNames: ['channel', 'variant', 'release', 'arch'], registers,
    });
    this.lastRun = new Gauge({ name: `${PREFIX}last_run_timestamp_seconds`, help: 'When the last cycle finished, whatever its result (0: never).', registers });
    this.cycleRunning = new Gauge({ name: `${PREFIX}cycle_running`, help: '1 while a sync cycle runs.', registers });
    this.downloadBytes = new Counter({ name: `${PREFIX}download_bytes_total`, help: 'Image bytes received from the source (resumed prefixes are not counted again).', registers });
    this.uploadBytes = new Counter({ name: `${PREFIX}upload_bytes_total`, help: 'Image bytes published to targets (adopted images move none).', labelNames: ['target'], registers });
    this.downloadSeconds = new Histogram({ name: `${PREFIX}download_duration_seconds`, help: 'Duration of image downloads that completed.', buckets: TRANSFER_BUCKETS_SECONDS, registers });
    this.uploadSeconds = new Histogram({ name: `${PREFIX}upload_duration_seconds`, help: 'Duration of publications that moved bytes.', labelNames: ['target'], buckets: TRANSFER_BUCKETS_SECONDS, registers });
    this.publicationLag = new Gauge({
      name: `${PREFIX}publication_lag_seconds`,
      help: 'From upstream publishing a serial (its SHA256SUMS Last-Modified, else the listing date; the simplestreams updated) to its reveal on the target; the newest reveal per stream (channel/variant), release, arch and target.',
      labelNames: ['stream', 'release', 'arch', 'target'], registers,
    });
    this.failures = new Counter({ name: `${PREFIX}image_failures_total`, help: 'Failed image steps, by step (download, verify, publish, retire).', labelNames: ['step'], registers });

    new Gauge({
      name: `${PREFIX}images`, help: 'Images recorded in state, by state.', labelNames: ['state'], registers,
      collect() {
        this.reset();
        const images = state()?.listImages() ?? [];
        for (const s of IMAGE_STATES) this.set({ state: s }, 0);
        for (const image of images) this.inc({ state: image.state });
      },
    });
    new Gauge({
      name: `${PREFIX}publications`, help: 'Publications recorded in state, by target and state.', labelNames: ['target', 'state'], registers,
      collect() {
        this.reset();
        for (const image of state()?.listImages() ?? []) {
          for (const p of Object.values(image.publications)) this.inc({ target: p.target, state: p.state });
        }
      },
    });
    new Gauge({
      name: `${PREFIX}newest_serial_age_seconds`,
      help: 'Age of the newest serial published on each target, per channel, variant, release and arch (from the serial date).',
      labelNames: ['channel', 'variant', 'release', 'arch', 'target'], registers,
      collect() {
        this.reset();
        for (const n of newestPublishedSerials(state()?.listImages() ?? [])) {
          const dateMs = serialDateMs(n.serial);
          if (dateMs !== undefined) this.set({ channel: n.channel, variant: n.variant, release: n.release, arch: n.arch, target: n.target }, Math.max(0, (now() - dateMs) / 1000));
        }
      },
    });
  }

  /** Seed what survives restarts (the last success) from the runs recorded in state. */
  seedFromRuns(runs: readonly RunRecord[]): void {
    const lastOk = runs.find((r) => (r.result === 'ok' || r.result === 'incomplete') && r.finishedAt);
    if (lastOk) this.lastSuccess.set(Date.parse(lastOk.finishedAt!) / 1000);
    const last = runs.find((r) => r.finishedAt && r.result !== 'running');
    if (last) this.lastRun.set(Date.parse(last.finishedAt!) / 1000);
    const lastFindings = runs.find((r) => r.result === 'ok' || r.result === 'incomplete' || r.result === 'failed');
    if (lastFindings) this.setFindings({ eol: lastFindings.eol, incomplete: lastFindings.incomplete });
  }

  /** What the last cycle found upstream besides images: releases past end of life, arches missing. */
  private setFindings(record: { readonly [key: string]: unknown }): void {
    this.releaseEol.reset();
    this.archMissing.reset();
    for (const e of Array.isArray(record.eol) ? record.eol as Array<Record<string, unknown>> : []) {
      const [channel = '', variant = ''] = String(e.stream).split('/');
      this.releaseEol.set({ channel, variant, release: String(e.release), gone: String(e.gone === true) }, 1);
    }
    for (const i of Array.isArray(record.incomplete) ? record.incomplete as Array<Record<string, unknown>> : []) {
      const [channel = '', variant = ''] = String(i.stream).split('/');
      this.archMissing.set({ channel, variant, release: String(i.release), arch: String(i.arch) }, 1);
    }
  }

  /** The log tap. */
  readonly observe = (record: EventRecord): void => {
    switch (record.event) {
      case 'sync.run.started':
        this.cycleRunning.set(1);
        break;
      case 'sync.run.finished': {
        this.cycleRunning.set(0);
        const result = String(record.result);
        const atSeconds = Date.parse(record.time) / 1000;
        this.runs.inc({ result });
        if (result !== 'interrupted') {
          this.lastRun.set(atSeconds);
          this.setFindings(record);
        }
        if (result === 'ok' || result === 'incomplete') this.lastSuccess.set(atSeconds);
        break;
      }
      case 'image.download.started':
      case 'http.download.resume':
      case 'http.download.restart':
      case 'image.download.progress':
      case 'image.download.done':
      case 'image.verify.failed':
        this.countDownloadBytes(record);
        if (record.event === 'image.download.done') this.downloadSeconds.observe(numberOf(record.durationMs) / 1000);
        if (record.event === 'image.verify.failed') this.failures.inc({ step: 'verify' });
        break;
      case 'http.retry': {
        // A retry inside one download: the resume that follows continues bytes this process moved.
        const tally = this.downloads.get(imageKeyOf(record));
        if (tally) tally.tracked = true;
        break;
      }
      case 'image.download.failed':
        this.failures.inc({ step: 'download' });
        break;
      case 'image.publish.done':
        if (record.adopted !== true) {
          const target = String(record.target);
          this.uploadBytes.inc({ target }, numberOf(record.bytes));
          this.uploadSeconds.observe({ target }, numberOf(record.durationMs) / 1000);
        }
        if (typeof record.lagSeconds === 'number') {
          this.publicationLag.set({
            stream: `${String(record.channel)}/${String(record.variant)}`, release: String(record.release), arch: String(record.arch), target: String(record.target),
          }, record.lagSeconds);
        }
        break;
      case 'image.publish.failed':
      // A target that could not get ready (a wrong password): its publications fail before the download, counted once.
      case 'sync.preflight.failed':
        this.failures.inc({ step: 'publish' });
        break;
      case 'image.retire.failed':
        this.failures.inc({ step: 'retire' });
        break;
    }
  };

  /**
   * Every byte that crossed the network once: progress events carry the byte offset reached, a resume
   * carries where the .part stood (bytes after the last progress event were moved too), done the size.
   */
  private countDownloadBytes(record: EventRecord): void {
    const key = imageKeyOf(record);
    let tally = this.downloads.get(key);
    const created = !tally;
    if (!tally) {
      tally = { countedBytes: 0, tracked: false };
      this.downloads.set(key, tally);
    }
    const add = (toBytes: number) => {
      if (toBytes > tally.countedBytes) this.downloadBytes.inc(toBytes - tally.countedBytes);
      tally.countedBytes = toBytes;
      tally.tracked = true;
    };
    switch (record.event) {
      case 'image.download.started':
        // A tally left by an aborted or failed try in this process: its bytes up to the .part's end were moved here.
        if (!created) tally.tracked = true;
        break;
      case 'http.download.resume': {
        const from = numberOf(record.fromBytes);
        if (tally.tracked) add(from);
        else tally.countedBytes = from;
        tally.tracked = true;
        break;
      }
      case 'http.download.restart':
        tally.countedBytes = 0;
        tally.tracked = true;
        break;
      case 'image.download.progress': {
        const bytes = numberOf(record.bytes);
        if (typeof record.totalBytes === 'number') tally.totalBytes = record.totalBytes;
        if (bytes < tally.countedBytes) tally.countedBytes = 0; // started over from byte 0
        add(bytes);
        break;
      }
      case 'image.download.done':
        add(numberOf(record.bytes));
        this.downloads.delete(key);
        break;
      case 'image.verify.failed':
        // The whole file arrived before the checksum was known; the .part is gone, the next try starts at 0.
        if (tally.totalBytes !== undefined) add(tally.totalBytes);
        this.downloads.delete(key);
        break;
    }
  }
}

function numberOf(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

function imageKeyOf(record: EventRecord): string {
  return [record.channel, record.variant, record.release, record.arch, record.serial].map(String).join('/');
}

/** `20261120` or `20261120.1` -> midnight UTC of that day. */
export function serialDateMs(serial: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(?:\.\d+)?$/.exec(serial);
  if (!m) return undefined;
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
}

/** The newest serial published on each target, per release/arch. */
export function newestPublishedSerials(
  images: ReadonlyArray<{ channel: string; variant: string; release: string; arch: string; serial: string; publications: Record<string, { target: string; state: string }> }>,
): Array<{ channel: string; variant: string; release: string; arch: string; target: string; serial: string }> {
  const newest = new Map<string, { channel: string; variant: string; release: string; arch: string; target: string; serial: string }>();
  for (const image of images) {
    for (const p of Object.values(image.publications)) {
      if (p.state !== 'published') continue;
      const key = `${image.channel}/${image.variant}/${image.release}/${image.arch}/${p.target}`;
      const seen = newest.get(key);
      if (!seen || compareSerials(image.serial, seen.serial) > 0) {
        newest.set(key, { channel: image.channel, variant: image.variant, release: image.release, arch: image.arch, target: p.target, serial: image.serial });
      }
    }
  }
  return [...newest.values()];
}
