import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import * as openpgp from 'openpgp';
import { SHIPPED_KEYRING_PATH } from '../../src/config/load.js';
import { loadKeyring, verifyDetachedSignature } from '../../src/source/signature.js';

const samples = new URL('../fixtures/samples/noble-20260926/', import.meta.url);
const sums = readFileSync(new URL('SHA256SUMS', samples));
const signature = readFileSync(new URL('SHA256SUMS.gpg', samples));

describe('verifyDetachedSignature with the shipped Ubuntu keyring', () => {
  test('accepts the real signed SHA256SUMS of noble 20260926 and names the signing key', async () => {
    const keyring = await loadKeyring(SHIPPED_KEYRING_PATH);
    const { fingerprint, keyExpiredAt } = await verifyDetachedSignature(sums, signature, keyring, 'SHA256SUMS.gpg');
    assert.equal(fingerprint, 'D2EB44626FDDC30B513D5BB71A5D6C4C7DB87C81');
    assert.equal(keyExpiredAt, undefined);
  });

  test('the real signature verifies in both binary and text message modes', async () => {
    const keyring = await loadKeyring(SHIPPED_KEYRING_PATH);
    const sig = await openpgp.readSignature({ armoredSignature: signature.toString('utf8') });
    for (const message of [await openpgp.createMessage({ binary: sums }), await openpgp.createMessage({ text: sums.toString('utf8') })]) {
      const res = await openpgp.verify({ message, signature: sig, verificationKeys: keyring });
      await assert.doesNotReject(res.signatures[0]!.verified);
    }
  });

  test('rejects the list with one flipped byte', async () => {
    const keyring = await loadKeyring(SHIPPED_KEYRING_PATH);
    const tampered = Buffer.from(sums);
    tampered[200] = tampered[200]! ^ 0x01;
    await assert.rejects(verifyDetachedSignature(tampered, signature, keyring, 'SHA256SUMS.gpg'),
      (err: Error & { code?: string }) => err.code === 'SIGNATURE_INVALID');
  });

  test('rejects a signature by a key outside the keyring', async () => {
    const { privateKey, publicKey } = await openpgp.generateKey({ type: 'curve25519', userIDs: [{ name: 'Not Ubuntu' }], format: 'object' });
    const other = await openpgp.sign({ message: await openpgp.createMessage({ binary: sums }), signingKeys: privateKey, detached: true });
    const keyring = await loadKeyring(SHIPPED_KEYRING_PATH);
    await assert.rejects(verifyDetachedSignature(sums, Buffer.from(other as string), keyring, 'x'), /does not verify/);
    assert.ok(publicKey);
  });

  test('rejects something that is not a signature', async () => {
    const keyring = await loadKeyring(SHIPPED_KEYRING_PATH);
    await assert.rejects(verifyDetachedSignature(sums, Buffer.from('<html>404</html>'), keyring, 'x'), /not an OpenPGP signature/);
  });
});
