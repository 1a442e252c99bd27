/**
 * What direct I/O (O_DIRECT) needs from memory and offsets, for the few places that move whole images:
 * the download's `.part` writer and the upload's file reader. Direct transfers go between the disk and our
 * buffer without the page cache: no copy, no fresh page-cache pages, nothing of a 1 GiB image left to evict
 * what other services on the host had cached (README, "Light on the host's page cache").
 */

/** Offsets and lengths of direct transfers are multiples of this (a filesystem block; a page). */
export const DIRECT_ALIGN_BYTES = 4096;

const WASM_PAGE_BYTES = 64 * 1024;

/** The one WebAssembly API used here (the project's TypeScript libs declare no WebAssembly values). */
const { Memory: WasmMemory } = (globalThis as unknown as {
  WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number }) => { buffer: ArrayBuffer } };
}).WebAssembly;

/**
 * A buffer of `sizeBytes` starting on a page boundary, as O_DIRECT wants: WebAssembly memory is mapped in whole
 * pages. Any other buffer is aligned only by chance; if the memory cannot be had, a plain buffer does (direct
 * transfers then fail with EINVAL and their callers fall back to the page cache).
 */
export function pageAlignedBuffer(sizeBytes: number): Buffer {
  const pages = Math.max(1, Math.ceil(sizeBytes / WASM_PAGE_BYTES));
  try {
    return Buffer.from(new WasmMemory({ initial: pages, maximum: pages }).buffer, 0, sizeBytes);
  } catch {
    return Buffer.allocUnsafeSlow(sizeBytes);
  }
}
