/**
 * What a Glance image of ours looks like, as plain data: the create request, the properties by which we
 * find our images again, and the reading of a Glance image back into a PublishedImage. Pure.
 */
import type { GlanceTargetConfig } from './schema.js';
import type { CreateImageRequest, GlanceImage } from '../../openstack/glance.js';
import { ARCHES, compareSerials, type Arch, type UpstreamImage } from '../../image.js';
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

/** Every property of a new image: hw_* defaults < configured properties < our fixed ones. */
export function imageProperties(config: Pick<GlanceTargetConfig, 'name' | 'properties' | 'nameTemplate'>, image: UpstreamImage, sha256: string): Record<string, string> {
  return {
    ...HW_DEFAULTS[image.arch],
    ...config.properties,
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
): CreateImageRequest {
  return {
    ...imageProperties(config, image, file.sha256),
    name: renderImageName(config.nameTemplate, image),
    disk_format: disk.format,
    container_format: config.containerFormat,
    visibility: 'private',
    os_hidden: true,
    min_disk: disk.minDiskGiB,
    tags: [...new Set(config.tags)],
  };
}

/** A custom property's value, when it is a string. */
export function propertyOf(image: GlanceImage, key: string): string | undefined {
  const value: unknown = image[key];
  return typeof value === 'string' ? value : undefined;
}

/** Glance holds the verified bytes (checked by us) and the image is complete. */
export function isVerifiedCopy(image: GlanceImage, file: { sha256: string; sizeBytes: number }): boolean {
  return image.status === 'active' && propertyOf(image, PROP.verified) === 'true'
    && propertyOf(image, PROP.sha256) === file.sha256 && image.size === file.sizeBytes;
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
    pinned: image.protected === true || image.tags.some((t) => keepTags.includes(t)),
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
