/** The model of one upstream image, shared by every stage of the pipeline. */

export const CHANNELS = ['release', 'daily'] as const;
export type Channel = (typeof CHANNELS)[number];

export const VARIANTS = ['server', 'minimal'] as const;
export type Variant = (typeof VARIANTS)[number];

export const ARCHES = ['amd64', 'arm64', 'armhf', 'ppc64el', 'riscv64', 's390x'] as const;
export type Arch = (typeof ARCHES)[number];

/** A signed document an image's checksum came from: a SHA256SUMS, its detached signature, a simplestreams `.sjson`. */
export interface SignedDocument {
  /** Where the source fetched it; its bytes stay in the state's response cache under this URL. */
  url: string;
  /** Its path below the source root, as upstream lays it out, e.g. `releases/noble/release-20240605/SHA256SUMS`. */
  path: string;
}

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
  /** Size the signed metadata gives (simplestreams); a download of another size fails. Unknown from SHA256SUMS. */
  sizeBytes?: number;
  /**
   * End of the release's standard support (`YYYY-MM-DD`): the source's own date (simplestreams `support_eol`), else
   * the shipped release table's. Glance images carry it as `ubuntu_eol`.
   */
  supportEol?: string;
  /**
   * The image's path below the source root, as upstream lays it out, e.g.
   * `releases/noble/release-20240605/ubuntu-24.04-server-cloudimg-amd64.img`; for targets that rebuild the layout.
   */
  upstreamPath?: string;
  /**
   * The documents its checksum was verified with (the signature included), for targets that republish them;
   * one that names others comes before them (the simplestreams index before its products file).
   */
  signedBy?: SignedDocument[];
  /**
   * When upstream published this serial (ISO 8601): the Last-Modified of its SHA256SUMS, else the serial
   * folder's date in the release listing; from simplestreams metadata, the nearest `updated` (of the version,
   * its product, or the products file); absent when upstream said none. The start of the publication lag.
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
