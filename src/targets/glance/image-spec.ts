/**
 * What a Glance image of ours looks like, as plain data: the create request, the properties by which we
 * find our images again, and the reading of a Glance image back into a PublishedImage. Pure.
 */
import type { GlancePropertyRule, GlanceTargetConfig } from './schema.js';
import type { CreateImageRequest, GlanceImage } from '../../openstack/glance.js';
import { ARCHES, compareSerials, type Arch, type UpstreamImage } from '../../image.js';
import { releaseInfo } from '../../source/releases.js';
import { GLANCE_ARCHITECTURE } from './properties.js';
import type { PublishedImage } from '../target.js';

/** Our bookkeeping properties. Config cannot set them (the schema reserves `cloudimg_sync_*`). */
export const PROP = {
  /** Name of the target that made the image: two targets on one project keep separate images. */
  target: 'cloudimg_sync_target',
  sha256: 'cloudimg_sync_sha256',
  source: 'cloudimg_sync_source',
  channel: 'cloudimg_sync_channel',
  variant: 'cloudimg_sync_variant',
  /** The name from `nameTemplate`, given back when the stable name moves to a newer image. */
  templateName: 'cloudimg_sync_name',
  /** `true` once Glance's size, md5 and sha512 matched the verified file; absent until then. */
  verified: 'cloudimg_sync_verified',
  /** `true` on the newest verified image of its release/arch/variant/channel. */
  latest: 'cloudimg_sync_latest',
  /** ISO time retention hid the image. */
  hiddenAt: 'cloudimg_sync_hidden_at',
  /** `qcow2` when Glance holds the guest disk of the signed qcow2 as raw (converted by us or by Glance). */
  convertedFrom: 'cloudimg_sync_converted_from',
  /**
   * Digests of the raw bytes, computed here from the verified qcow2's conversion: `cloudimg_sync_raw_sha256`, and
   * `cloudimg_sync_raw_<algorithm>` for the one Glance is compared by (`..._raw_sha512` with Glance's default).
   */
  rawDigestPrefix: 'cloudimg_sync_raw_',
} as const;

/**
 * Per-arch defaults for Nova's libvirt driver. arm64 (and riscv64) guests have no BIOS and need the
 * `virt` machine; the Ubuntu arm64 images boot with UEFI. Every value can be overridden by `properties`.
 */
export const HW_DEFAULTS: Readonly<Record<Arch, Readonly<Record<string, string>>>> = {
  amd64: { hw_disk_bus: 'virtio', hw_vif_model: 'virtio' },
  arm64: { hw_firmware_type: 'uefi', hw_machine_type: 'virt', hw_disk_bus: 'virtio', hw_vif_model: 'virtio' },
  armhf: { hw_machine_type: 'virt', hw_disk_bus: 'virtio', hw_vif_model: 'virtio' },
  ppc64el: { hw_disk_bus: 'virtio', hw_vif_model: 'virtio' },
  riscv64: { hw_machine_type: 'virt', hw_disk_bus: 'virtio', hw_vif_model: 'virtio' },
  s390x: { hw_disk_bus: 'virtio', hw_vif_model: 'virtio' },
};

const ARCH_OF_GLANCE: ReadonlyMap<string, Arch> = new Map(ARCHES.map((a) => [GLANCE_ARCHITECTURE[a], a]));

type NameFields = Pick<UpstreamImage, 'version' | 'release' | 'arch' | 'serial' | 'channel' | 'variant'>;

/** What sets an image apart from the release server image of the same release: `''`, `minimal`, `daily`, `minimal daily`. */
export function flavorOf(image: Pick<UpstreamImage, 'channel' | 'variant'>): string {
  return [image.variant === 'server' ? '' : image.variant, image.channel === 'release' ? '' : image.channel].filter(Boolean).join(' ');
}

/** `nameTemplate` with its placeholders filled in; an empty field (unknown version, `{flavor}` of a release server image) leaves no double space. */
export function renderImageName(template: string, image: NameFields): string {
  const values: Record<string, string> = {
    version: image.version, codename: image.release, release: image.release, arch: image.arch,
    glanceArch: GLANCE_ARCHITECTURE[image.arch], serial: image.serial, channel: image.channel, variant: image.variant,
    flavor: flavorOf(image),
  };
  return template.replace(/\{(\w+)\}/g, (m, key: string) => values[key] ?? m).replace(/\s+/g, ' ').trim();
}

/** The release/arch/variant/channel an image belongs to, as Glance property filters. */
export function seriesFilter(image: Pick<UpstreamImage, 'release' | 'arch' | 'channel' | 'variant'>): Record<string, string> {
  return {
    ubuntu_codename: image.release,
    architecture: GLANCE_ARCHITECTURE[image.arch],
    [PROP.channel]: image.channel,
    [PROP.variant]: image.variant,
  };
}

/** Whether a property rule's `match` selects this image (every field given must match). */
export function ruleMatches(rule: Pick<GlancePropertyRule, 'match'>, image: Pick<UpstreamImage, 'channel' | 'variant' | 'release' | 'version' | 'arch'>): boolean {
  const { channel, variant, release, arch } = rule.match;
  return (!channel || channel.includes(image.channel)) && (!variant || variant.includes(image.variant))
    && (!arch || arch.includes(image.arch)) && (!release || release.includes(image.release) || (image.version !== '' && release.includes(image.version)));
}

/** `20261120` or `20261120.1` -> `2026-11-20`; undefined for a serial that does not start with a date. */
export function serialDate(serial: string): string | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(?:\.\d+)?$/.exec(serial);
  return m ? `${m[1]}-${m[2]}-${m[3]}` : undefined;
}

/**
 * The SCS image metadata standard's fields (scs-0102), derived from the stream: the release's end of
 * standard support (`provided_until`), the serial's date, the mirror's `keep` (`uuid_validity`: only the
 * newest `keep` serials stay). Ubuntu publishes release images every few weeks and dailies every day; no
 * hotfix time is promised (`hotfix_hours` 0). Any of them can be overridden by `properties`.
 */
export function scsProperties(image: UpstreamImage, keep: number | undefined): Record<string, string> {
  const release = releaseInfo(image.release);
  const built = serialDate(image.serial);
  const title = release ? `Ubuntu ${release.version}${release.lts ? ' LTS' : ''} (${release.name})` : `Ubuntu ${image.version || image.release}`;
  return {
    image_original_user: 'ubuntu',
    ...(built ? { image_build_date: built } : {}),
    image_source: image.url,
    image_description: `${title} ${image.variant} cloud image, ${image.channel} serial ${image.serial}`,
    replace_frequency: image.channel === 'daily' ? 'daily' : 'monthly',
    // The source's own end of support (simplestreams support_eol) when it gave one, else the release table's.
    provided_until: image.supportEol ?? release?.eol ?? 'notice',
    uuid_validity: keep ? `last-${keep}` : 'none',
    hotfix_hours: '0',
  };
}

/** What the target adds to every image beside its configuration: the retention depth, for SCS's uuid_validity. */
export interface ImagePropertyContext {
  keep?: number;
}

type PropertyConfig = Pick<GlanceTargetConfig, 'name' | 'properties' | 'nameTemplate'> & Partial<Pick<GlanceTargetConfig, 'hypervisorType' | 'metadata'>>;

/**
 * Every property of a new image: hw_* defaults and `os_admin_user` < the SCS set (opt-in) < `hypervisorType`
 * < the configured property rules that match, in order < our fixed ones.
 */
export function imageProperties(config: PropertyConfig, image: UpstreamImage, sha256: string, context: ImagePropertyContext = {}): Record<string, string> {
  const configured = config.properties.filter((rule) => ruleMatches(rule, image)).map((rule) => rule.set);
  return {
    ...HW_DEFAULTS[image.arch],
    os_admin_user: 'ubuntu',
    ...(config.metadata === 'scs' ? scsProperties(image, context.keep) : {}),
    ...(config.hypervisorType ? { hypervisor_type: config.hypervisorType } : {}),
    ...Object.assign({}, ...configured) as Record<string, string>,
    os_distro: 'ubuntu',
    ...(image.version ? { os_version: image.version } : {}),
    ...seriesFilter(image),
    ubuntu_serial: image.serial,
    // End of standard support of the release (YYYY-MM-DD): lets a cloud tell users which images are on borrowed time.
    ...(image.supportEol ? { ubuntu_eol: image.supportEol } : {}),
    [PROP.target]: config.name,
    [PROP.sha256]: sha256,
    [PROP.source]: image.url,
    [PROP.templateName]: renderImageName(config.nameTemplate, image),
  };
}

/** POST /v2/images body: created private and hidden; revealed only once Glance holds the verified bytes. */
export function createImageRequest(
  config: GlanceTargetConfig,
  image: UpstreamImage,
  file: { sha256: string },
  disk: { format: 'qcow2' | 'raw'; minDiskGiB: number },
  context: ImagePropertyContext = {},
): CreateImageRequest {
  return {
    ...imageProperties(config, image, file.sha256, context),
    name: renderImageName(config.nameTemplate, image),
    disk_format: disk.format,
    container_format: config.containerFormat,
    visibility: 'private',
    os_hidden: true,
    min_disk: disk.minDiskGiB,
    ...(config.minRamMiB ? { min_ram: config.minRamMiB } : {}),
    tags: [...new Set(config.tags)],
  };
}

/** A custom property's value, when it is a string. */
export function propertyOf(image: GlanceImage, key: string): string | undefined {
  const value: unknown = image[key];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Glance holds the verified bytes (checked by us) and the image is complete: the file itself, or, for an
 * image converted to raw, the guest disk of that file (`virtualSizeBytes` long, with the raw digests we
 * recorded when we verified it). Either format is a verified copy, whatever the target's diskFormat now.
 * A size left undefined is not compared: before a download only the signed sha256 (and, from simplestreams,
 * the signed size) is known; our verified flag says Glance's digest was compared with the file's then.
 */
export function isVerifiedCopy(image: GlanceImage, file: { sha256: string; sizeBytes?: number; virtualSizeBytes?: number }): boolean {
  if (image.status !== 'active' || propertyOf(image, PROP.verified) !== 'true' || propertyOf(image, PROP.sha256) !== file.sha256) return false;
  const sizeIs = (expected: number | undefined) => expected === undefined || image.size === expected;
  if (propertyOf(image, PROP.convertedFrom) === undefined) return sizeIs(file.sizeBytes);
  const recorded = image.os_hash_algo ? propertyOf(image, `${PROP.rawDigestPrefix}${image.os_hash_algo.replace(/_/g, '-')}`) : undefined;
  return image.disk_format === 'raw' && sizeIs(file.virtualSizeBytes) && recorded !== undefined && image.os_hash_value === recorded;
}

/** The properties that mark an image as the raw conversion of the signed qcow2, with the raw bytes' digests. */
export function rawConversionProperties(raw: { sha256: string; digests: Readonly<Record<string, string>> }): Record<string, string> {
  const digests = Object.entries({ ...raw.digests, sha256: raw.sha256 }).map(([algorithm, hex]) => [`${PROP.rawDigestPrefix}${algorithm}`, hex]);
  return { [PROP.convertedFrom]: 'qcow2', ...Object.fromEntries(digests) as Record<string, string> };
}

/**
 * One of our Glance images as retention sees it, or undefined if it lacks our identity properties.
 * An image never verified (a crashed upload) counts as hidden since its creation, so retention clears it
 * away once it is past `keep` and the grace period.
 */
export function toPublishedImage(image: GlanceImage, keepTags: readonly string[]): PublishedImage | undefined {
  const release = propertyOf(image, 'ubuntu_codename');
  const serial = propertyOf(image, 'ubuntu_serial');
  const arch = ARCH_OF_GLANCE.get(propertyOf(image, 'architecture') ?? '');
  const channel = propertyOf(image, PROP.channel);
  const variant = propertyOf(image, PROP.variant);
  if (!release || !serial || !arch || !channel || !variant) return undefined;
  let hiddenAtMs: number | undefined;
  if (image.os_hidden === true) {
    const marked = Date.parse(propertyOf(image, PROP.hiddenAt) ?? '');
    const created = Date.parse(image.created_at ?? '');
    if (Number.isFinite(marked)) hiddenAtMs = marked;
    else if (propertyOf(image, PROP.verified) !== 'true' && Number.isFinite(created)) hiddenAtMs = created;
  }
  return {
    ref: image.id, release, arch, variant, channel, serial,
    ...(hiddenAtMs !== undefined ? { hiddenAtMs } : {}),
    hidden: image.os_hidden === true,
    complete: image.status === 'active' && propertyOf(image, PROP.verified) === 'true',
    pinned: image.protected === true || image.tags.some((t) => keepTags.includes(t)),
    ...(propertyOf(image, PROP.sha256) ? { sha256: propertyOf(image, PROP.sha256) } : {}),
  };
}

/**
 * Of a series' images, the one the latest pointer belongs on: the newest serial that is verified, active
 * and not hidden by retention (ties: the one created last).
 */
export function newestVerified(images: readonly GlanceImage[]): GlanceImage | undefined {
  const eligible = images.filter((i) => i.status === 'active' && propertyOf(i, PROP.verified) === 'true' && propertyOf(i, PROP.hiddenAt) === undefined);
  return eligible.sort((a, b) =>
    compareSerials(propertyOf(b, 'ubuntu_serial') ?? '', propertyOf(a, 'ubuntu_serial') ?? '')
    || (b.created_at ?? '').localeCompare(a.created_at ?? ''))[0];
}
