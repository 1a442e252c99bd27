import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { RawConversionError, convertToRaw } from '../../src/targets/glance/raw-conversion.js';
import { writeQcow2Image } from '../fixtures/mirror/qcow2.js';
import { describeWithQemuImg } from '../support/qemu-img.js';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describeWithQemuImg('qcow2 -> raw with the real qemu-img', () => {
  let dir = '';
  let qcow2 = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'raw-conversion-'));
    qcow2 = path.join(dir, 'disk.img');
    await writeQcow2Image(qcow2, { fileSizeBytes: 512 * 1024, virtualSizeBytes: 8 * 1024 * 1024 });
  });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  test('writes exactly what `qemu-img convert -O raw` writes, sized to the guest disk, sparse', async () => {
    const reference = path.join(dir, 'reference.raw');
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcow2, reference]);
    const out = await convertToRaw(qcow2, path.join(dir, 'disk.img.raw'));
    assert.equal(out.sizeBytes, 8 * 1024 * 1024);
    const bytes = await readFile(out.path);
    assert.equal(bytes.length, out.sizeBytes);
    assert.equal(sha256(bytes), sha256(await readFile(reference)));
    const st = await stat(out.path);
    assert.ok(st.blocks * 512 < out.sizeBytes / 2, `zeros stay holes (${st.blocks * 512} bytes allocated)`);
  });

  test('replaces a leftover of an interrupted run, and never writes through a symlink planted at the output path', async () => {
    const victim = path.join(dir, 'victim');
    await writeFile(victim, 'precious');
    const dest = path.join(dir, 'planted.raw');
    await symlink(victim, dest);
    const out = await convertToRaw(qcow2, dest);
    assert.equal(await readFile(victim, 'utf8'), 'precious');
    assert.ok((await lstat(out.path)).isFile());
    await assert.rejects(readlink(dest));
  });

  test('a qcow2 with a backing file is refused, and nothing is left behind', async () => {
    const child = path.join(dir, 'child.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', qcow2, child]);
    const dest = path.join(dir, 'child.raw');
    await assert.rejects(convertToRaw(child, dest), (err: unknown) => err instanceof RawConversionError && /backing/.test(err.message));
    await assert.rejects(stat(dest));
  });

  test('a damaged qcow2: RAW_CONVERSION_FAILED with qemu-img\'s reason, and the partial output removed', async () => {
    const broken = path.join(dir, 'broken.img');
    const bytes = await readFile(qcow2);
    bytes.writeBigUInt64BE(12_345n, 40); // an L1 table offset that is not cluster aligned
    await writeFile(broken, bytes);
    const dest = path.join(dir, 'broken.raw');
    await assert.rejects(convertToRaw(broken, dest), (err: unknown) => {
      assert.ok(err instanceof RawConversionError);
      assert.equal(err.code, 'RAW_CONVERSION_FAILED');
      assert.match(err.message, /converting .*broken\.img to raw failed: ./);
      return true;
    });
    await assert.rejects(stat(dest));
  });
});
