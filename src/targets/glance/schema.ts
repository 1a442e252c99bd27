import { z } from 'zod';
import { noProxyList, proxyUrl } from '../../fetch/proxy.js';
import { targetName } from '../target.js';
import { GLANCE_NAME_PLACEHOLDERS, GLANCE_RESERVED_PROPERTY } from './properties.js';

const glanceNameTemplate = z.string().min(1).refine(
  (t) => [...t.matchAll(/\{([^}]*)\}/g)].every((m) => (GLANCE_NAME_PLACEHOLDERS as readonly string[]).includes(m[1] ?? '')),
  `unknown placeholder; use ${GLANCE_NAME_PLACEHOLDERS.map((p) => `{${p}}`).join(' ')}`,
);

export const glanceTargetSchema = z.strictObject({
  name: targetName,
  type: z.literal('glance'),
  method: z.enum(['put', 'stream', 'web-download', 'glance-direct']).default('put'),
  cloud: z.string().optional(),
  region: z.string().optional(),
  interface: z.enum(['public', 'internal', 'admin']).optional(),
  endpoint: z.string().url().optional(),
  visibility: z.enum(['public', 'private', 'shared', 'community']).default('private'),
  containerFormat: z.enum(['bare', 'ovf', 'ova', 'aki', 'ari', 'ami', 'docker', 'compressed']).default('bare'),
  nameTemplate: glanceNameTemplate.default('Ubuntu {version} ({codename}) {arch} {serial}'),
  /** Name given to the newest image of each release/arch (the previous one gets its template name back). */
  stableName: glanceNameTemplate.optional(),
  tags: z.array(z.string().min(1)).default([]),
  keepTags: z.array(z.string().min(1)).default(['cloudimg-sync-keep']),
  properties: z
    .record(z.string(), z.string())
    .default({})
    .refine((p) => Object.keys(p).every((k) => !GLANCE_RESERVED_PROPERTY.test(k)), 'a reserved key (a Glance image field, os_glance_*, os_distro, os_version, architecture, ubuntu_*, cloudimg_sync_*) cannot be set as a property'),
  hideGraceHours: z.number().nonnegative().default(72),
  /** How long an import (web-download, glance-direct) may take before it counts as failed. */
  importTimeoutMinutes: z.number().positive().default(30),
  auth: z.record(z.string(), z.string()).optional(),
  /** Proxy for this cloud's Keystone and Glance, replacing http.proxy and the environment; "" = direct. */
  proxy: proxyUrl.optional(),
  /** Hosts of this cloud reached directly, replacing http.noProxy and NO_PROXY. */
  noProxy: noProxyList.optional(),
});

export type GlanceTargetConfig = z.infer<typeof glanceTargetSchema>;
