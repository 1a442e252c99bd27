import { open } from 'node:fs/promises';

/** 'QFI\xfb' at offset 0 of every qcow2 file. */
const QCOW2_MAGIC = 0x514649fb;
/** magic(4) version(4) backing_file_offset(8) backing_file_size(4) cluster_bits(4) size(8) */
const VIRTUAL_SIZE_OFFSET = 24;
const HEADER_BYTES = VIRTUAL_SIZE_OFFSET + 8;
const GIB = 1024 ** 3;

export interface DiskImageInfo {
  /** `qcow2` when the file starts with the qcow2 magic, else `raw`. */
  format: 'qcow2' | 'raw';
  /** Size of the guest disk: the qcow2 header's `size`, or the file size for raw. */
  virtualSizeBytes: number;
}

/** Format and guest disk size from the first 32 bytes of an image file (qcow2 header fields are big-endian). */
export async function readDiskImageInfo(filePath: string): Promise<DiskImageInfo> {
  const handle = await open(filePath, 'r');
  try {
    const header = Buffer.alloc(HEADER_BYTES);
    const { bytesRead } = await handle.read(header, 0, HEADER_BYTES, 0);
    if (bytesRead === HEADER_BYTES && header.readUInt32BE(0) === QCOW2_MAGIC) {
      return { format: 'qcow2', virtualSizeBytes: Number(header.readBigUInt64BE(VIRTUAL_SIZE_OFFSET)) };
    }
    return { format: 'raw', virtualSizeBytes: (await handle.stat()).size };
  } finally {
    await handle.close();
  }
}

/** Glance's `min_disk` (whole GiB, rounded up) for a guest disk of this size. */
export function minDiskGiB(virtualSizeBytes: number): number {
  return Math.ceil(virtualSizeBytes / GIB);
}
