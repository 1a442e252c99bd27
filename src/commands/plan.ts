import { describeError } from '../errors.js';
import { releaseInfo } from '../source/releases.js';
import { reconcilePublications, withChanges } from '../sync/reconcile.js';
import { decideRetention } from '../sync/retention.js';
import type { RunFindings } from '../state/store.js';
import type { PublishedImage } from '../targets/target.js';
import { discover, endOfLifeReleases, findingsOf, planCycle, retentionPolicy } from '../sync/run.js';
import { loadTargetSettings } from '../targets/create.js';
import { openContext, type GlobalOptions } from './context.js';

/** One step a cycle would take. The `plan --json` shape documented in the README. */
export interface PlanItem {
  /** `adopt`: the target holds a verified copy of these bytes already; it is adopted, not downloaded for it. */
  action: 'download' | 'publish' | 'adopt' | 'hide' | 'remove';
  channel: string;
  variant: string;
  release: string;
  /** Empty when neither the release table nor the file name tells it. */
  version: string;
  arch: string;
  serial: string;
  /** The upstream file (download, publish, adopt). */
  url?: string;
  /** Known once a download recorded it. */
  sizeBytes?: number;
  /** publish, adopt, hide, remove. */
  target?: string;
  /** The target's reference of the image to hide or remove (a Glance id, a path). */
  ref?: string;
  /** hide, remove: beyond `keep`, or of a release past end of life under the target's `eol:` policy. */
  reason?: 'keep' | 'eol';
}

export interface PlanReport extends RunFindings {
  items: PlanItem[];
  /** One line per release the source could not be read for. */
  sourceErrors: string[];
}

/**
 * `plan`: what a cycle would download, publish and retire, without doing it. Takes no lock and only reads
 * state, so it runs next to a daemon; `signal` (SIGTERM/SIGINT) ends it.
 */
export async function planCommand(options: GlobalOptions, signal?: AbortSignal): Promise<PlanReport> {
  const ctx = openContext(options, { lock: false, readOnlyState: true, logLevel: 'warn', destination: process.stderr });
  try {
    await loadTargetSettings(ctx.targets);
    const discovery = await discover({ ...ctx, signal });
    // What each target holds now, as a cycle's reconcile would see it (images deleted or hidden by hand).
    const listings = new Map<string, PublishedImage[]>();
    let images = ctx.store.listImages();
    for (const target of ctx.targets) {
      signal?.throwIfAborted();
      const listing = await target.listPublished({ log: ctx.log });
      listings.set(target.name, listing);
      images = withChanges(images, target.name, reconcilePublications(images, target.name, listing));
    }
    const sizes = new Map(images.map((r) => [r.key, r.sizeBytes]));
    const items: PlanItem[] = [];
    const findings = findingsOf(discovery);
    const eolReleases = endOfLifeReleases(Date.now(), findings.eol, discovery.images.map((i) => i.release));
    // Plan against state as if the discovered images were recorded, without recording them.
    for (const action of planCycle(ctx, discovery.images, eolReleases, images, listings)) {
      const { channel, variant, release, version, arch, serial, url } = action.image;
      const sizeBytes = sizes.get(action.key) ?? undefined;
      const base = { channel, variant, release, version, arch, serial, url, ...(sizeBytes ? { sizeBytes } : {}) };
      if (action.download) items.push({ action: 'download', ...base });
      for (const target of action.publishTo) items.push({ action: action.adopt.includes(target) ? 'adopt' : 'publish', ...base, target });
    }
    for (const target of ctx.targets) {
      const published = listings.get(target.name) ?? [];
      const decision = decideRetention(published, retentionPolicy(ctx, target, published, findings.eol));
      for (const [action, list] of [['hide', decision.hide], ['remove', decision.remove]] as const) {
        for (const i of list) {
          items.push({
            action, channel: i.channel, variant: i.variant, release: i.release, version: releaseInfo(i.release)?.version ?? '',
            arch: i.arch, serial: i.serial, target: target.name, ref: i.ref, reason: decision.endOfLife.has(i) ? 'eol' : 'keep',
          });
        }
      }
    }
    return { items, sourceErrors: discovery.failures.map((f) => `${f.release} (${f.stream}): ${describeError(f.error)}`), ...findings };
  } finally {
    await ctx.close();
  }
}

export function formatPlan(report: PlanReport): string {
  const lines: string[] = [];
  for (const i of report.items) {
    const key = `${i.channel}/${i.variant}/${i.release}/${i.arch}/${i.serial}`;
    if (i.action === 'download') lines.push(`download  ${key}  ${i.url}`);
    else if (i.action === 'publish') lines.push(`publish   ${key}  -> ${i.target}`);
    else if (i.action === 'adopt') lines.push(`adopt     ${key}  -> ${i.target} (the verified copy it holds)`);
    else lines.push(`${i.action.padEnd(9)} ${key}  ${i.target}:${i.ref}${i.reason === 'eol' ? '  (end of life)' : ''}`);
  }
  for (const e of report.sourceErrors) lines.push(`error     ${e}`);
  for (const i of report.incomplete) lines.push(`missing   ${i.stream} ${i.release} ${i.arch}: ${i.reason}`);
  for (const e of report.eol) lines.push(`eol       ${e.stream} ${e.release}: past end of life${e.eol ? ` (${e.eol})` : ''}${e.gone ? ', gone upstream' : ''}${e.imported ? '' : ', dailies not imported'}`);
  if (lines.length === 0) lines.push('nothing to do: every wanted image is published and retention is satisfied');
  return lines.join('\n');
}
