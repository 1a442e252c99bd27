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

/**
 * Verify an ASCII-armored (or binary) detached signature over `signedBytes`, as gpgv does.
 * Throws SignatureError unless at least one signature by a key of the keyring is valid.
 * Returns the fingerprint of the key that signed.
 */
export async function verifyDetachedSignature(
  signedBytes: Uint8Array,
  signatureData: Uint8Array,
  keyring: Keyring,
  url: string,
): Promise<string> {
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
      return key ? key.getFingerprint().toUpperCase() : sig.keyID.toHex().toUpperCase();
    } catch (err) {
      failures.push(`key ${sig.keyID.toHex().toUpperCase()}: ${(err as Error).message}`);
    }
  }
  throw new SignatureError(url, failures.join('; ') || 'no signature found');
}
