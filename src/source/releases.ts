/**
 * Ubuntu codename <-> version and end-of-life dates, from the shipped table (ubuntu-release-table.ts,
 * rebuilt from Debian's distro-info-data by scripts/update-release-table.ts). A release missing here still
 * works on the release channel, whose file names carry the version (see discover.ts).
 */
import { UBUNTU_RELEASE_TABLE, type UbuntuRelease } from './ubuntu-release-table.js';

export type { UbuntuRelease } from './ubuntu-release-table.js';

const BY_CODENAME = new Map(UBUNTU_RELEASE_TABLE.map((r) => [r.codename, r]));
const CODENAME_BY_VERSION = new Map(UBUNTU_RELEASE_TABLE.map((r) => [r.version, r.codename]));

export interface ReleaseName {
  codename: string;
  /** Empty when the table does not know the codename yet. */
  version: string;
}

const CODENAME_RE = /^[a-z][a-z0-9-]*$/;
const VERSION_RE = /^\d{2}\.\d{2}$/;

/** Resolve `noble` or `24.04` (or `24.04 LTS`); undefined when it is neither a known version nor a codename. */
export function resolveRelease(name: string): ReleaseName | undefined {
  const trimmed = name.trim().toLowerCase().replace(/\s*lts$/, '');
  if (VERSION_RE.test(trimmed)) {
    const codename = CODENAME_BY_VERSION.get(trimmed);
    return codename ? { codename, version: trimmed } : undefined;
  }
  if (CODENAME_RE.test(trimmed)) return { codename: trimmed, version: BY_CODENAME.get(trimmed)?.version ?? '' };
  return undefined;
}

/**
 * The known codename a mistyped one most likely meant (at most two edits or swaps away, `nobel` -> `noble`);
 * undefined when the name is known or near none. A name far from every known one may be a release newer
 * than the table and is left to the source to confirm.
 */
export function suggestRelease(name: string): string | undefined {
  const wanted = name.trim().toLowerCase();
  if (BY_CODENAME.has(wanted) || wanted.length < 4) return undefined;
  let best: { codename: string; distance: number } | undefined;
  for (const { codename } of UBUNTU_RELEASE_TABLE) {
    const distance = editDistance(wanted, codename);
    if (distance <= 2 && (!best || distance < best.distance)) best = { codename, distance };
  }
  return best?.codename;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

export function knownReleases(): string[] {
  return UBUNTU_RELEASE_TABLE.map((r) => `${r.codename} (${r.version})`);
}

/** What the shipped table says of a codename; undefined for one it does not know. */
export function releaseInfo(codename: string): UbuntuRelease | undefined {
  return BY_CODENAME.get(codename);
}

/** Where an end-of-life date came from: the shipped table, or the source's own metadata (simplestreams `support_eol`). */
export type EolOrigin = 'table' | 'source';

export interface ReleaseSupport {
  /** End of standard support, YYYY-MM-DD; undefined when neither the source nor the table knows it. */
  eol?: string;
  /** End of ESM (LTS only), from the table. */
  eolEsm?: string;
  eolOrigin?: EolOrigin;
  /** True once the end-of-life day has begun (UTC). */
  pastEol: boolean;
}

/**
 * A release's support status at `nowMs`. The source's own date (simplestreams `support_eol`) wins over the
 * table: it is what upstream publishes today. Pure.
 */
export function releaseSupport(codename: string, nowMs: number, sourceEol?: string): ReleaseSupport {
  const row = BY_CODENAME.get(codename);
  const eol = sourceEol ?? row?.eol;
  const eolOrigin: EolOrigin | undefined = sourceEol ? 'source' : row ? 'table' : undefined;
  const eolMs = eol ? Date.parse(`${eol}T00:00:00Z`) : Number.NaN;
  return {
    ...(eol ? { eol } : {}),
    ...(row?.eolEsm ? { eolEsm: row.eolEsm } : {}),
    ...(eolOrigin ? { eolOrigin } : {}),
    pastEol: Number.isFinite(eolMs) && nowMs >= eolMs,
  };
}
