import { SyncError } from '../../errors.js';

const LINE_RE = /^([0-9a-fA-F]{64}) [ *](.+)$/;

/**
 * Parse a `SHA256SUMS` file (`<hex> *<name>` or `<hex>  <name>`) into file name -> lowercase hex.
 * The real file is sorted by hash, not by name, and two names may share a hash. One name listed twice with the
 * same hash is harmless; with two different hashes the list is refused (SUMS_AMBIGUOUS).
 */
export function parseSha256Sums(text: string, url: string): Map<string, string> {
  const sums = new Map<string, string>();
  const lines = text.split('\n');
  for (const [i, rawLine] of lines.entries()) {
    const line = rawLine.replace(/\r$/, '');
    if (line.trim() === '') continue;
    const match = LINE_RE.exec(line);
    if (!match) {
      throw new SyncError(
        'SUMS_MALFORMED',
        `${url} line ${i + 1} is not "<sha256> *<file>": ${JSON.stringify(line.slice(0, 80))}`,
        'the upstream checksum list is damaged or not a SHA256SUMS file; check source.url',
      );
    }
    const [name, hash] = [match[2]!, match[1]!.toLowerCase()];
    const earlier = sums.get(name);
    // Which of two hashes is meant cannot be known; picking one (the last, say) would be a guess an attacker steers.
    if (earlier !== undefined && earlier !== hash) {
      throw new SyncError(
        'SUMS_AMBIGUOUS',
        `${url} lists ${JSON.stringify(name.slice(0, 200))} twice with different hashes (${earlier} and ${hash})`,
        'the upstream checksum list is inconsistent; nothing from it is used until the mirror serves a corrected one',
      );
    }
    sums.set(name, hash);
  }
  if (sums.size === 0) {
    throw new SyncError('SUMS_MALFORMED', `${url} lists no files`, 'the upstream checksum list is empty; check source.url');
  }
  return sums;
}
