import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadKeyring, type Keyring } from './signature.js';
import type { SourceCache } from './source.js';

/**
 * The keyring, loaded when first needed, with an id that changes when its file does. `verifiedSums`
 * remembers which signed list verified with which keyring id, so a list and signature that are both
 * unchanged (304) since they verified are not verified again.
 */
export interface KeyringSource {
  id: string;
  load(): Promise<Keyring>;
  verifiedSums?: { get(url: string): string | undefined; set(url: string, verifiedWith: string): void };
}

/** The keyring at `keyringPath`, its verifications remembered in `cache`. */
export function keyringSource(keyringPath: string, cache: SourceCache): KeyringSource {
  let loaded: Promise<Keyring> | undefined;
  return {
    // The keyring file's digest: a cached verification counts only for the keyring it was made with.
    id: keyringId(keyringPath),
    load: () => (loaded ??= loadKeyring(keyringPath)),
    verifiedSums: { get: (url) => cache.getCachedVerification(url), set: (url, v) => cache.setCachedVerification(url, v) },
  };
}

/** The keyring file's digest; an unreadable file gets an id that matches no cached verification (load() then says why). */
function keyringId(keyringPath: string): string {
  try {
    return createHash('sha256').update(readFileSync(keyringPath)).digest('hex').slice(0, 16);
  } catch {
    return 'unreadable';
  }
}
