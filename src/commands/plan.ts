import { reconcilePublications, withChanges } from '../sync/reconcile.js';
import { decideRetention } from '../sync/retention.js';
import type { PublishedImage } from '../targets/target.js';
import { discover, planCycle } from '../sync/run.js';
import { describeError } from '../errors.js';
import { openContext, type GlobalOptions } from './context.js';

export interface PlanReport {
  downloads: Array<{ key: string; url: string }>;
  publishes: Array<{ key: string; target: string }>;
  retires: Array<{ target: string; step: 'hide' | 'remove'; ref: string; serial: string; release: string; arch: string }>;
  sourceErrors: string[];
}

/** `plan`: what a cycle would download, publish and retire, without doing it. */
export async function planCommand(options: GlobalOptions): Promise<PlanReport> {
  const ctx = openContext(options, { logLevel: 'warn' });
  try {
    const discovery = await discover(ctx);
    // What each target holds now, as a cycle's reconcile would see it (images deleted or hidden by hand).
    const listings = new Map<string, PublishedImage[]>();
    let images = ctx.store.listImages();
    for (const target of ctx.targets) {
      const listing = await target.listPublished({ log: ctx.log });
      listings.set(target.name, listing);
      images = withChanges(images, target.name, reconcilePublications(images, target.name, listing));
    }
    // Plan against state as if the discovered images were recorded, without recording them.
    const actions = planCycle(ctx, discovery.images, images);
    const report: PlanReport = {
      downloads: actions.filter((a) => a.download).map((a) => ({ key: a.key, url: a.image.url })),
      publishes: actions.flatMap((a) => a.publishTo.map((target) => ({ key: a.key, target }))),
      retires: [],
      sourceErrors: discovery.failures.map((f) => `${f.release}: ${describeError(f.error)}`),
    };
    for (const target of ctx.targets) {
      const decision = decideRetention(listings.get(target.name) ?? [], {
        keep: ctx.config.keep, hidesBeforeDelete: target.hidesBeforeDelete, hideGraceMs: target.hideGraceMs, nowMs: Date.now(),
      });
      for (const [step, list] of [['hide', decision.hide], ['remove', decision.remove]] as const) {
        for (const i of list) report.retires.push({ target: target.name, step, ref: i.ref, serial: i.serial, release: i.release, arch: i.arch });
      }
    }
    return report;
  } finally {
    await ctx.close();
  }
}

export function formatPlan(report: PlanReport): string {
  const lines: string[] = [];
  for (const d of report.downloads) lines.push(`download  ${d.key}  ${d.url}`);
  for (const p of report.publishes) lines.push(`publish   ${p.key}  -> ${p.target}`);
  for (const r of report.retires) lines.push(`${r.step.padEnd(9)} ${r.release}/${r.arch}/${r.serial}  ${r.target}:${r.ref}`);
  for (const e of report.sourceErrors) lines.push(`error     ${e}`);
  if (lines.length === 0) lines.push('nothing to do: every wanted image is published and retention is satisfied');
  return lines.join('\n');
}
