import { readFileSync } from 'node:fs';
import type * as OpenPgp from 'openpgp';
import { SignatureError, SyncError } from '../errors.js';

export type Keyring = OpenPgp.PublicKey[];

/** openpgp is large: loaded on first use, so a cycle whose signed lists are unchanged never loads it. */
const loadOpenPgp = (): Promise<typeof OpenPgp> => import('openpgp');

/** Read an armored (or binary) OpenPGP public keyring file. */
export async function loadKeyring(path: string): Promise<Keyring> {
  const openpgp = await loadOpenPgp();
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    throw new SyncError('KEYRING_UNREADABLE', `cannot read keyring ${path}: ${(err as Error).message}`, 'set source.keyring to a readable key file');
  }
  try {
    const text = data.toString('utf8');
    return text.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')
      ? await openpgp.readKeys({ armoredKeys: text })
      : await openpgp.readKeys({ binaryKeys: new Uint8Array(data) });
  } catch (err) {
    throw new SyncError('KEYRING_INVALID', `${path} holds no OpenPGP public key: ${(err as Error).message}`, 'use the Ubuntu cloud-image keyring (keys/ubuntu-cloudimage-keyring.asc)');
  }
}

export interface VerifiedSignature {
  /** Fingerprint of the key that signed. */
  fingerprint: string;
  /** When the signing key (or subkey) expired, if it has by now: the signature was made before, while it was valid. */
  keyExpiredAt?: Date;
}

/**
 * Verify an ASCII-armored (or binary) detached signature over `signedBytes`, as gpgv does: a signature made
 * while its key was valid verifies even if the key has expired since (the caller is told, to warn).
 * Throws SignatureError unless at least one signature by a key of the keyring is valid.
 */
export async function verifyDetachedSignature(
  signedBytes: Uint8Array,
  signatureData: Uint8Array,
  keyring: Keyring,
  url: string,
  nowMs = Date.now(),
): Promise<VerifiedSignature> {
  const openpgp = await loadOpenPgp();
  let signature: OpenPgp.Signature;
  try {
    const text = Buffer.from(signatureData).toString('utf8');
    signature = text.includes('-----BEGIN PGP SIGNATURE-----')
      ? await openpgp.readSignature({ armoredSignature: text })
      : await openpgp.readSignature({ binarySignature: signatureData });
  } catch (err) {
    throw new SignatureError(url, `not an OpenPGP signature (${(err as Error).message})`);
  }
  const message = await openpgp.createMessage({ binary: signedBytes });
  const result = await openpgp.verify({ message, signature, verificationKeys: keyring, expectSigned: false });
  const failures: string[] = [];
  for (const sig of result.signatures) {
    try {
      await sig.verified;
      const key = keyring.find((k) => k.getKeys(sig.keyID).length > 0);
      if (!key) return { fingerprint: sig.keyID.toHex().toUpperCase() };
      return { fingerprint: key.getFingerprint().toUpperCase(), keyExpiredAt: await expiredBy(key, sig.keyID, nowMs) };
    } catch (err) {
      failures.push(`key ${sig.keyID.toHex().toUpperCase()}: ${(err as Error).message}`);
    }
  }
  throw new SignatureError(url, failures.join('; ') || 'no signature found');
}

/** The earliest expiry, before `nowMs`, of the primary key or the subkey that signed; undefined when neither has expired. */
async function expiredBy(key: OpenPgp.PublicKey, keyID: OpenPgp.KeyID, nowMs: number): Promise<Date | undefined> {
  const times: unknown[] = [await key.getExpirationTime().catch(() => null)];
  for (const k of key.getKeys(keyID)) if (k !== key) times.push(await (k as OpenPgp.Subkey).getExpirationTime().catch(() => null));
  const expired = times.filter((t): t is Date => t instanceof Date && t.getTime() <= nowMs).sort((a, b) => a.getTime() - b.getTime());
  return expired[0];
}
