import { z } from 'zod';
import { HTTP_DEFAULTS } from '../fetch/http-client.js';
import { noProxyList, proxyUrl } from '../fetch/proxy.js';
import { DEFAULT_SOURCE_TYPE, sourceConfigSchemas } from '../source/registry.js';
import { targetConfigSchemas, type TargetConfig as RegisteredTargetConfig } from '../targets/registry.js';
import { cronExpressionValid } from './cron.js';

export { DEFAULT_SOURCE_URL } from '../source/source.js';

/** An absent `source`, or one without `type`, is the default type: existing configs keep working. */
function withDefaultSourceType(raw: unknown): unknown {
  if (raw === undefined) return { type: DEFAULT_SOURCE_TYPE };
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw) && !('type' in raw)) return { ...raw, type: DEFAULT_SOURCE_TYPE };
  return raw;
}

export const configSchema = z.strictObject({
  /** Where images come from: a union on `type` over the registered source types; `type` defaults to the first (listing). */
  source: z.preprocess(withDefaultSourceType, z.discriminatedUnion('type', sourceConfigSchemas)),
  stateDir: z.string().default('./var/state'),
  cacheDir: z.string().default('./var/cache'),
  keep: z.number().int().min(1).default(2),
  /** Images downloading and publishing at once (those of one release/arch still one after another). */
  concurrency: z.number().int().min(1).max(32).default(2),
  /** Keep downloaded images in cacheDir after every target has them (default: delete them). */
  keepCache: z.boolean().default(false),
  http: z
    .strictObject({
      connectTimeoutMs: z.number().int().positive().default(HTTP_DEFAULTS.connectTimeoutMs),
      idleTimeoutMs: z.number().int().positive().default(HTTP_DEFAULTS.idleTimeoutMs),
      retries: z.number().int().min(0).default(HTTP_DEFAULTS.retries),
      retryBaseDelayMs: z.number().int().positive().default(HTTP_DEFAULTS.retryBaseDelayMs),
      retryMaxDelayMs: z.number().int().positive().default(HTTP_DEFAULTS.retryMaxDelayMs),
      /** Proxy for the source and the clouds; replaces HTTPS_PROXY/HTTP_PROXY; "" = direct whatever the environment says. */
      proxy: proxyUrl.optional(),
      /** Hosts reached directly (curl's NO_PROXY syntax); replaces NO_PROXY. */
      noProxy: noProxyList.optional(),
      /** PEM file of further trusted CAs (a mirror or proxy with a private CA). */
      caFile: z.string().min(1).optional(),
      /** Like curl's --speed-limit/--speed-time: a body slower than this over lowSpeedTimeMs is abandoned and retried (0: off). */
      lowSpeedBytesPerSec: z.number().int().nonnegative().default(HTTP_DEFAULTS.lowSpeedBytesPerSec),
      lowSpeedTimeMs: z.number().int().positive().default(HTTP_DEFAULTS.lowSpeedTimeMs),
      /** The whole of one request for a listing, SHA256SUMS or signature. */
      metadataTimeoutMs: z.number().int().positive().default(HTTP_DEFAULTS.metadataTimeoutMs),
      /** Follow an https source's redirect to plain http (refused by default). */
      allowInsecureRedirects: z.boolean().default(HTTP_DEFAULTS.allowInsecureRedirects),
    })
    .prefault({}),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') }).prefault({}),
  // ---- daemon (`cloudimg-sync daemon`)
  /**
   * node-cron expression (5 fields, or 6 with seconds first): when the daemon runs a cycle. Unset: hourly,
   * at a minute and second fixed per install (derived from stateDir/install-id; see resolveSchedule()).
   */
  schedule: z.string().refine((s) => cronExpressionValid(s), 'not a valid cron expression (e.g. "17 * * * *")').optional(),
  /** Run a cycle as soon as the daemon starts, not only on the schedule. */
  runOnStart: z.boolean().default(true),
  /** On SIGTERM/SIGINT, how long the cycle in flight may take to stop before the daemon exits anyway. */
  shutdownGraceMs: z.number().int().nonnegative().default(30_000),
  /** After a failed cycle, an extra earlier retry after min(baseDelayMs * 2^(failures-1), maxDelayMs). */
  failureRetry: z
    .strictObject({
      baseDelayMs: z.number().int().positive().default(60_000),
      maxDelayMs: z.number().int().positive().default(3_600_000),
    })
    .prefault({}),
  /** The record of past cycles in state (`history`). */
  history: z
    .strictObject({
      /** Cycles kept in the runs table; older ones are pruned at the end of each cycle. */
      keepRuns: z.number().int().min(1).default(1000),
    })
    .prefault({}),
  /** HTTP listener for /healthz and /metrics. */
  health: z
    .strictObject({
      enabled: z.boolean().default(true),
      listen: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65_535).default(9465),
      /** /healthz answers 503 when the last successful cycle is older than this. */
      maxAgeHours: z.number().positive().default(24),
      /** /healthz answers 503 (`stuck`) while a cycle has been running longer than this. */
      maxCycleHours: z.number().positive().default(6),
    })
    .prefault({}),
  targets: z
    .array(z.discriminatedUnion('type', targetConfigSchemas))
    .min(1)
    .default([{ name: 'local', type: 'directory', path: './var/images', mode: '0644' }])
    .superRefine((ts, ctx) => {
      // The issue points at the second use of the name: the message names it, never the targets' settings.
      const seen = new Set<string>();
      for (const [i, t] of ts.entries()) {
        if (seen.has(t.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: 'an earlier target has this name; target names must be unique' });
        seen.add(t.name);
      }
    }),
});

export type Config = z.infer<typeof configSchema>;
export type TargetConfig = RegisteredTargetConfig;
