import { z } from 'zod';
import { noProxyList, proxyUrl } from '../../fetch/proxy.js';
import { ARCHES, CHANNELS, VARIANTS } from '../../image.js';
import { targetCommon } from '../target.js';
import { GLANCE_NAME_PLACEHOLDERS, GLANCE_RESERVED_PROPERTY } from './properties.js';

const propertyMap = z.record(z.string(), z.string()).refine(
  (p) => Object.keys(p).every((k) => !GLANCE_RESERVED_PROPERTY.test(k)),
  'a reserved key (a Glance image field, os_glance_*, os_distro, os_version, architecture, ubuntu_*, cloudimg_sync_*) cannot be set as a property',
);
/** One value or a list of them, as a list. */
function oneOrMany<T extends z.ZodType>(schema: T) {
  return z.union([schema, z.array(schema).min(1)]).transform((v) => (Array.isArray(v) ? v : [v]) as z.output<T>[]);
}
// YAML reads 20.10 as the number 20.1: put the two decimals back.
const releaseName = z.union([z.string(), z.number().transform((n) => n.toFixed(2))]);
/** Properties for the images a `match` selects (every field that is given must match; none: every image). */
const propertyRule = z.strictObject({
  match: z.strictObject({
    channel: oneOrMany(z.enum(CHANNELS)).optional(),
    variant: oneOrMany(z.enum(VARIANTS)).optional(),
    /** Codenames or versions. */
    release: oneOrMany(releaseName).optional(),
    arch: oneOrMany(z.enum(ARCHES)).optional(),
  }).default({}),
  set: propertyMap,
});
export type GlancePropertyRule = z.infer<typeof propertyRule>;

const glanceNameTemplate = z.string().min(1).refine(
  (t) => [...t.matchAll(/\{([^}]*)\}/g)].every((m) => (GLANCE_NAME_PLACEHOLDERS as readonly string[]).includes(m[1] ?? '')),
  `unknown placeholder; use ${GLANCE_NAME_PLACEHOLDERS.map((p) => `{${p}}`).join(' ')}`,
);

export const glanceTargetSchema = z.strictObject({
  ...targetCommon,
  type: z.literal('glance'),
  method: z.enum(['put', 'stream', 'web-download', 'glance-direct']).default('put'),
  cloud: z.string().optional(),
  region: z.string().optional(),
  interface: z.enum(['public', 'internal', 'admin']).optional(),
  endpoint: z.string().url().optional(),
  visibility: z.enum(['public', 'private', 'shared', 'community']).default('private'),
  containerFormat: z.enum(['bare', 'ovf', 'ova', 'aki', 'ari', 'ami', 'docker', 'compressed']).default('bare'),
  /**
   * What Glance stores: the signed qcow2 as it is, or its guest disk as raw (`qemu-img convert`, for Ceph RBD
   * stores, which boot only raw without converting on every boot).
   */
  diskFormat: z.enum(['qcow2', 'raw']).default('qcow2'),
  // {flavor} is empty for release/server images, else `minimal`, `daily` or `minimal daily`.
  nameTemplate: glanceNameTemplate.default('Ubuntu {version} ({codename}) {flavor} {arch} {serial}'),
  /** Name given to the newest image of each release/arch (the previous one gets its template name back). */
  stableName: glanceNameTemplate.optional(),
  tags: z.array(z.string().min(1)).default([]),
  keepTags: z.array(z.string().min(1)).default(['cloudimg-sync-keep']),
  /**
   * Extra properties: a map for every image, or a list of rules `{ match: { channel, variant, release, arch }, set: {...} }`
   * applied in order (a later rule wins). Either way they override the defaults (hw_*, os_admin_user, SCS).
   */
  properties: z.preprocess(
    (v) => (v && typeof v === 'object' && !Array.isArray(v) ? [{ set: v }] : v),
    z.array(propertyRule),
  ).default([]),
  /** Glance's `hypervisor_type` property (unset by default: any hypervisor). */
  hypervisorType: z.enum(['qemu', 'kvm']).optional(),
  /** Glance's `min_ram`, in MiB (0: no minimum). */
  minRamMiB: z.number().int().min(0).default(0),
  /** With `visibility: shared`: the projects (names or ids) the images are shared with, and accepted for where the credentials allow. */
  members: z.array(z.string().min(1)).default([]),
  /** Opt-in metadata sets: `scs` adds the SCS image metadata standard's fields (scs-0102), derived from the stream. */
  metadata: z.enum(['scs']).optional(),
  hideGraceHours: z.number().nonnegative().default(72),
  /** Uploads into this Glance at once, when the cycle has several images in flight (`concurrency`). */
  concurrency: z.number().int().min(1).max(32).default(1),
  /** How long an import (web-download, glance-direct) may take before it counts as failed. */
  importTimeoutMinutes: z.number().positive().default(30),
  auth: z.record(z.string(), z.string()).optional(),
  /** Proxy for this cloud's Keystone and Glance, replacing http.proxy and the environment; "" = direct. */
  proxy: proxyUrl.optional(),
  /** Hosts of this cloud reached directly, replacing http.noProxy and NO_PROXY. */
  noProxy: noProxyList.optional(),
}).refine((t) => !(t.diskFormat === 'raw' && t.method === 'web-download'), {
  path: ['diskFormat'],
  message: 'raw needs method put, stream or glance-direct: with web-download Glance fetches the qcow2 itself (enable its image_conversion import plugin for raw instead)',
}).refine((t) => t.members.length === 0 || t.visibility === 'shared', {
  path: ['members'],
  message: 'members need visibility: shared (Glance shares only shared images with projects)',
});

export type GlanceTargetConfig = z.infer<typeof glanceTargetSchema>;
