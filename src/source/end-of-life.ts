/**
 * End of life of a configured release, the same for every source type: the shipped table, or the source's
 * own date (simplestreams `support_eol`), or an `END OF LIFE` mark upstream (a listing description) says
 * so. Past EOL: released images are still mirrored (with a warning, and a target's `eol:` policy applies),
 * dailies are not imported, and a release folder gone upstream is no failure. Pure.
 */
import type { Channel } from '../image.js';
import { releaseSupport } from './releases.js';

export interface EolVerdict {
  pastEol: boolean;
  /** End of standard support (YYYY-MM-DD) when known. */
  eol?: string;
  /** Whether this stream's images of the release are imported at all. */
  imported: boolean;
}

export function endOfLife(
  codename: string, channel: Channel, nowMs: number, upstream: { sourceEol?: string; markedEol?: boolean } = {},
): EolVerdict {
  const support = releaseSupport(codename, nowMs, upstream.sourceEol);
  const pastEol = support.pastEol || upstream.markedEol === true;
  return { pastEol, ...(support.eol ? { eol: support.eol } : {}), imported: !pastEol || channel !== 'daily' };
}
