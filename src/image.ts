/** The model of one upstream image, shared by every stage of the pipeline. */

export const CHANNELS = ['release', 'daily'] as const;
export type Channel = (typeof CHANNELS)[number];

export const VARIANTS = ['server', 'minimal'] as const;
export type Variant = (typeof VARIANTS)[number];

export const ARCHES = ['amd64', 'arm64', 'armhf', 'ppc64el', 'riscv64', 's390x'] as const;
export type Arch = (typeof ARCHES)[number];

/** An image that exists upstream, with its checksum from a signature-checked SHA256SUMS. */
export interface UpstreamImage {
  channel: Channel;
  variant: Variant;
  /** Codename, e.g. `noble`. */
  release: string;
  /** Version, e.g. `24.04`; empty when no table or file name told it. */
  version: string;
  arch: Arch;
  /** Build serial, e.g. `20240605.1`. */
  serial: string;
  fileName: string;
  url: string;
  sha256: string;
  /** Whether the SHA256SUMS this checksum came from was signature-verified. */
  signed: boolean;
  /** End of standard support of its release (YYYY-MM-DD), from the source's metadata or the release table. */
  eol?: string;
  /**
   * When upstream published this serial (ISO 8601): the Last-Modified of its SHA256SUMS, else the serial
   * folder's date in the release listing; absent when upstream said neither. The start of the publication lag.
   */
  publishedAt?: string;
}

/** The stable identity of an image across runs. */
export function imageKey(image: Pick<UpstreamImage, 'channel' | 'variant' | 'release' | 'arch' | 'serial'>): string {
  return `${image.channel}/${image.variant}/${image.release}/${image.arch}/${image.serial}`;
}

/**
 * Compare build serials: `YYYYMMDD` with an optional `.N` suffix; newer sorts later.
 * Numeric by parts so `20240605.10` > `20240605.9` > `20240605`.
 */
export function compareSerials(a: string, b: string): number {
  const pa = a.split('.').map((p) => Number.parseInt(p, 10));
  const pb = b.split('.').map((p) => Number.parseInt(p, 10));
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? -1;
    const y = pb[i] ?? -1;
    if (Number.isNaN(x) || Number.isNaN(y)) return a.localeCompare(b);
    if (x !== y) return x - y;
  }
  return 0;
}
