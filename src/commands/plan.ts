import { decideRetention } from '../sync/retention.js';
import { discover, planCycle, retentionPolicy } from '../sync/run.js';
import { releaseSupport } from '../source/releases.js';
import type { RunFindings } from '../state/store.js';
import { describeError } from '../errors.js';
import { openContext, type GlobalOptions } from './context.js';

export interface PlanReport extends RunFindings {
  /** `key` is `channel/variant/release/arch/serial`. */
  downloads: Array<{ key: string; url: string }>;
  publishes: Array<{ key: string; target: string }>;
  retires: Array<{
    target: string; step: 'hide' | 'remove'; ref: string; channel: string; variant: string; serial: string; release: string; arch: string;
    reason: 'keep' | 'eol';
  }>;
  sourceErrors: string[];
}

/** `plan`: what a cycle would download, publish and retire, without doing it. */
export async function planCommand(options: GlobalOptions): Promise<PlanReport> {
  const ctx = openContext(options, { logLevel: 'warn' });
  try {
    const discovery = await discover(ctx);
    // Plan against state as if the discovered images were recorded, without recording them.
    const eol: RunFindings['eol'] = discovery.eol.map(({ stream, release, eol: date, gone, imported }) => ({ stream, release, ...(date ? { eol: date } : {}), gone, imported }));
    const eolReleases = new Set([...eol.map((e) => e.release), ...discovery.images.map((i) => i.release).filter((r) => releaseSupport(r, Date.now()).pastEol)]);
    const actions = planCycle(ctx, discovery.images, eolReleases);
    const report: PlanReport = {
      downloads: actions.filter((a) => a.download).map((a) => ({ key: a.key, url: a.image.url })),
      publishes: actions.flatMap((a) => a.publishTo.map((target) => ({ key: a.key, target }))),
      retires: [],
      sourceErrors: discovery.failures.map((f) => `${f.release} (${f.stream}): ${describeError(f.error)}`),
      incomplete: discovery.incomplete.map(({ stream, release, arch, reason }) => ({ stream, release, arch, reason })),
      eol,
    };
    for (const target of ctx.targets) {
      const published = await target.listPublished({ log: ctx.log });
      const decision = decideRetention(published, retentionPolicy(ctx, target, published, eol));
      for (const [step, list] of [['hide', decision.hide], ['remove', decision.remove]] as const) {
        for (const i of list) {
          report.retires.push({
            target: target.name, step, ref: i.ref, channel: i.channel, variant: i.variant, serial: i.serial, release: i.release, arch: i.arch,
            reason: decision.endOfLife.has(i) ? 'eol' : 'keep',
          });
        }
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
  for (const r of report.retires) {
    lines.push(`${r.step.padEnd(9)} ${r.channel}/${r.variant}/${r.release}/${r.arch}/${r.serial}  ${r.target}:${r.ref}${r.reason === 'eol' ? '  (end of life)' : ''}`);
  }
  for (const e of report.sourceErrors) lines.push(`error     ${e}`);
  for (const i of report.incomplete) lines.push(`missing   ${i.stream} ${i.release} ${i.arch}: ${i.reason}`);
  for (const e of report.eol) lines.push(`eol       ${e.stream} ${e.release}: past end of life${e.eol ? ` (${e.eol})` : ''}${e.gone ? ', gone upstream' : ''}${e.imported ? '' : ', dailies not imported'}`);
  if (lines.length === 0) lines.push('nothing to do: every wanted image is published and retention is satisfied');
  return lines.join('\n');
}
