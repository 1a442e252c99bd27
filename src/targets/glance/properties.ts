/** Glance's property tables: what our images are called and which properties config may not set. */
import type { Arch } from '../../image.js';

/** Glance's `architecture` property for each Ubuntu arch. */
export const GLANCE_ARCHITECTURE: Record<Arch, string> = {
  amd64: 'x86_64',
  arm64: 'aarch64',
  armhf: 'armv7l',
  ppc64el: 'ppc64le',
  riscv64: 'riscv64',
  s390x: 's390x',
};

/** Placeholders a glance `nameTemplate` / `stableName` may use. */
export const GLANCE_NAME_PLACEHOLDERS = ['version', 'codename', 'release', 'arch', 'glanceArch', 'serial', 'channel', 'variant', 'flavor'] as const;

/**
 * Keys a glance target's `properties` may not set: Glance's own image fields (set from other settings or
 * by Glance), the identity properties every image gets (os_distro, architecture, ubuntu_*), and our
 * `cloudimg_sync_*` bookkeeping: the target finds its images again by them.
 */
export const GLANCE_RESERVED_PROPERTY = /^(id|name|status|visibility|protected|os_hidden|owner|size|virtual_size|checksum|os_hash_algo|os_hash_value|disk_format|container_format|min_disk|min_ram|tags|created_at|updated_at|locations|direct_url|self|file|schema|os_glance_.*|os_distro|os_version|architecture|ubuntu_codename|ubuntu_serial|ubuntu_eol|cloudimg_sync_.*)$/;
