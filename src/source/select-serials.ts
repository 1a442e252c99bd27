/**
 * Which upstream serials to mirror, like `sstream-mirror --max N`: for each arch, the newest `keep` serials
 * that have it. A serial being published may list only some arches (or no signed list yet); an arch then
 * comes from the newest serial that has it, and from the new one once it is complete. Pure.
 */
import { compareSerials, type Arch } from '../image.js';

/** What reading one serial directory found. */
export type SerialReading =
  /** A (signed) SHA256SUMS was read: the wanted arches it lists. */
  | { serial: string; state: 'ok'; arches: ReadonlySet<Arch> }
  /** The directory is there but not complete upstream: no SHA256SUMS, or no SHA256SUMS.gpg, yet. */
  | { serial: string; state: 'incomplete'; reason: string }
  /** The directory itself is gone (pruned between the listing and the read). */
  | { serial: string; state: 'gone' };

export interface SerialSelection {
  /** Per arch, its newest `keep` serials, newest first. */
  picks: Map<Arch, string[]>;
  /** Wanted arches that no serial read has. */
  missing: Arch[];
  /** Every arch has `keep` serials: reading older serials cannot change the picks. */
  done: boolean;
}

/** How many serials past `keep` are read, newest first, before an arch counts as missing. */
export const EXTRA_SERIALS_READ = 2;

/** The most serial directories one release/stream reads in a cycle. */
export function serialsToRead(keep: number): number {
  return keep + EXTRA_SERIALS_READ;
}

/** The picks given the serials read so far (any order). */
export function selectSerials(readings: readonly SerialReading[], arches: readonly Arch[], keep: number): SerialSelection {
  const newestFirst = [...readings].sort((a, b) => compareSerials(b.serial, a.serial));
  const picks = new Map<Arch, string[]>();
  for (const arch of arches) {
    const serials = newestFirst.filter((r) => r.state === 'ok' && r.arches.has(arch)).map((r) => r.serial).slice(0, keep);
    picks.set(arch, serials);
  }
  const missing = arches.filter((a) => picks.get(a)!.length === 0);
  const done = arches.every((a) => picks.get(a)!.length >= keep);
  return { picks, missing, done };
}
