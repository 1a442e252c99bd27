import { open } from 'node:fs/promises';

/** 'QFI\xfb' at offset 0 of every qcow2 file. */
const QCOW2_MAGIC = 0x514649fb;
/** magic(4) version(4) backing_file_offset(8) backing_file_size(4) cluster_bits(4) size(8) ... */
const BACKING_FILE_OFFSET = 8;
const VIRTUAL_SIZE_OFFSET = 24;
/** Version 3 headers: incompatible_features(8) at 72; bit 2 = the guest data lives in an external file. */
const INCOMPATIBLE_FEATURES_OFFSET = 72;
const EXTERNAL_DATA_FILE_BIT = 1n << 2n;
const HEADER_BYTES = INCOMPATIBLE_FEATURES_OFFSET + 8;
const GIB = 1024 ** 3;

export interface DiskImageInfo {
  /** `qcow2` when the file starts with the qcow2 magic, else `raw`. */
  format: 'qcow2' | 'raw';
  /** Size of the guest disk: the qcow2 header's `size`, or the file size for raw. */
  virtualSizeBytes: number;
  /**
   * A qcow2 that reads other files (a backing file, an external data file): converting it would read
   * whatever those paths hold on this machine. Ubuntu's images have neither.
   */
  refersToOtherFiles: boolean;
}

/** Format and guest disk size from the first 80 bytes of an image file (qcow2 header fields are big-endian). */
export async function readDiskImageInfo(filePath: string): Promise<DiskImageInfo> {
  const handle = await open(filePath, 'r');
  try {
    const header = Buffer.alloc(HEADER_BYTES);
    const { bytesRead } = await handle.read(header, 0, HEADER_BYTES, 0);
    if (bytesRead >= VIRTUAL_SIZE_OFFSET + 8 && header.readUInt32BE(0) === QCOW2_MAGIC) {
      const version3 = header.readUInt32BE(4) >= 3 && bytesRead === HEADER_BYTES;
      const externalData = version3 && (header.readBigUInt64BE(INCOMPATIBLE_FEATURES_OFFSET) & EXTERNAL_DATA_FILE_BIT) !== 0n;
      return {
        format: 'qcow2',
        virtualSizeBytes: Number(header.readBigUInt64BE(VIRTUAL_SIZE_OFFSET)),
        refersToOtherFiles: header.readBigUInt64BE(BACKING_FILE_OFFSET) !== 0n || externalData,
      };
    }
    return { format: 'raw', virtualSizeBytes: (await handle.stat()).size, refersToOtherFiles: false };
  } finally {
    await handle.close();
  }
}

/** Glance's `min_disk` (whole GiB, rounded up) for a guest disk of this size. */
export function minDiskGiB(virtualSizeBytes: number): number {
  return Math.ceil(virtualSizeBytes / GIB);
}
