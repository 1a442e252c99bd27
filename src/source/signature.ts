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
  return validSigner(result.signatures, keyring, url);
}

/** The signer of the first signature that verifies with a key of the keyring; SignatureError when none does. */
async function validSigner(signatures: OpenPgp.VerifyMessageResult["signatures"], keyring: Keyring, url: string): Promise<VerifiedSignature> {
  const failures: string[] = [];
  for (const sig of signatures) {
    try {
      await sig.verified;
      const key = keyring.find((k) => k.getKeys(sig.keyID).length > 0);
      if (!key) return { fingerprint: sig.keyID.toHex().toUpperCase() };
      return { fingerprint: key.getFingerprint().toUpperCase(), keyExpiredAt: await expiredBy(key, sig.keyID, Date.now()) };
    } catch (err) {
      failures.push(`key ${sig.keyID.toHex().toUpperCase()}: ${(err as Error).message}`);
    }
  }
  throw new SignatureError(url, failures.join('; ') || 'no signature found');
}

/** What a verified cleartext-signed document says, and who signed it. */
export interface VerifiedCleartext extends VerifiedSignature {
  /** The signed text, as covered by the signature (never the bytes outside it). */
  text: string;
}

/**
 * Verify a cleartext-signed document (`gpg --clearsign`, as simplestreams' `.sjson`) and return the text the
 * signature covers. Throws SignatureError when it is not cleartext-signed at all or no signature by a key of
 * the keyring is valid: the caller parses only what this returns.
 */
export async function verifyCleartextSignature(signedData: Uint8Array, keyring: Keyring, url: string): Promise<VerifiedCleartext> {
  const openpgp = await loadOpenPgp();
  const armored = Buffer.from(signedData).toString('utf8');
  if (!armored.trimStart().startsWith('-----BEGIN PGP SIGNED MESSAGE-----')) {
    throw new SignatureError(url, 'it is not cleartext-signed (no "BEGIN PGP SIGNED MESSAGE" header)');
  }
  let message: OpenPgp.CleartextMessage;
  try {
    message = await openpgp.readCleartextMessage({ cleartextMessage: armored });
  } catch (err) {
    throw new SignatureError(url, `not an OpenPGP cleartext message (${(err as Error).message})`);
  }
  const result = await openpgp.verify({ message, verificationKeys: keyring, expectSigned: false });
  return { ...(await validSigner(result.signatures, keyring, url)), text: result.data };
}

/** The earliest expiry, before `nowMs`, of the primary key or the subkey that signed; undefined when neither has expired. */
async function expiredBy(key: OpenPgp.PublicKey, keyID: OpenPgp.KeyID, nowMs: number): Promise<Date | undefined> {
  const times: unknown[] = [await key.getExpirationTime().catch(() => null)];
  for (const k of key.getKeys(keyID)) if (k !== key) times.push(await (k as OpenPgp.Subkey).getExpirationTime().catch(() => null));
  const expired = times.filter((t): t is Date => t instanceof Date && t.getTime() <= nowMs).sort((a, b) => a.getTime() - b.getTime());
  return expired[0];
}
