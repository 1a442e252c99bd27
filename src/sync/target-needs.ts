/**
 * What the download of one image must provide, decided from what its targets declare. Pure: plain data in,
 * plain data out, no target type named.
 */
import { DIGEST_ALGORITHMS, type DigestAlgorithm } from '../targets/target.js';

/** What the planning needs to know of a target: its declarations, not its type. */
export interface TargetDeclarations {
  /** Digests it compares after a publish. */
  readonly digests?: readonly DigestAlgorithm[];
  /** It takes the bytes while they arrive (the optional `publishStream` capability). */
  readonly streams: boolean;
}

/** Every digest some target declares, once, in a stable order (sha256 is always computed and left out). */
export function digestsWanted(targets: readonly { readonly digests?: readonly DigestAlgorithm[] }[]): DigestAlgorithm[] {
  const wanted = new Set(targets.flatMap((t) => t.digests ?? []));
  return DIGEST_ALGORITHMS.filter((a) => a !== 'sha256' && wanted.has(a));
}

/**
 * Whether the downloaded copy is scratch: deleted again within the cycle unless a publication fails, so it is
 * not forced to disk meanwhile and state does not point at it. True when every target taking the image
 * streams it and the operator does not keep the cache.
 */
export function cachedCopyIsScratch(targets: readonly TargetDeclarations[], keepCache: boolean): boolean {
  return !keepCache && targets.length > 0 && targets.every((t) => t.streams);
}
