/**
 * What to mirror, as streams: a channel (release, daily) and a variant (server, minimal), each with its
 * releases and arches. `source.streams` lists them; the older `channel`/`variant`/`releases`/`arches` keys
 * are a one-stream shorthand. Every source type takes the same selection keys (schema shapes below).
 */
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { ARCHES, CHANNELS, VARIANTS, type Arch, type Channel, type Variant } from '../image.js';
import { knownReleases, resolveRelease, suggestRelease, type ReleaseName } from './releases.js';

/** A stream as the rest of the program sees it: releases resolved to codename + version. */
export interface StreamSelection {
  /** `release/server`, `daily/minimal`: how config (target `streams:`), logs, metrics and status name it. */
  id: string;
  channel: Channel;
  variant: Variant;
  releases: ReleaseName[];
  arches: Arch[];
}

export function streamId(s: { channel: string; variant: string }): string {
  return `${s.channel}/${s.variant}`;
}

/** Every stream id the config may name, for messages. */
export const STREAM_IDS: readonly string[] = CHANNELS.flatMap((c) => VARIANTS.map((v) => `${c}/${v}`));

// YAML reads 20.10 as the number 20.1: put the two decimals back.
const releasesSchema = z.array(z.union([z.string(), z.number().transform((n) => n.toFixed(2))])).min(1);
const archesSchema = z.array(z.enum(ARCHES)).min(1);

/** One entry of `source.streams`. */
export const streamSchema = z.strictObject({
  channel: z.enum(CHANNELS).default('release'),
  variant: z.enum(VARIANTS).default('server'),
  releases: releasesSchema,
  arches: archesSchema.default(['amd64']),
});

/** The selection keys of a source's config: merge them into each source type's schema. */
export const streamSelectionShape = {
  /** Shorthand for one stream; left unset when `streams` is used. */
  channel: z.enum(CHANNELS).optional(),
  variant: z.enum(VARIANTS).optional(),
  releases: releasesSchema.optional(),
  arches: archesSchema.optional(),
  streams: z.array(streamSchema).min(1).optional(),
};

type SelectionKeys = { [K in keyof typeof streamSelectionShape]?: z.infer<(typeof streamSelectionShape)[K]> };

/** The one-stream shorthand's defaults: release/server, noble, amd64. */
const SHORTHAND_DEFAULTS = { channel: 'release', variant: 'server', releases: ['noble'], arches: ['amd64'] } as const;

/**
 * The streams a source config selects, releases resolved. Refuses `streams` mixed with the shorthand keys,
 * a stream listed twice and a release that is neither a codename nor a known version, naming the key.
 */
export function resolveStreams(source: SelectionKeys, origin: string, keyPrefix = 'source'): StreamSelection[] {
  const shorthand = (['channel', 'variant', 'releases', 'arches'] as const).filter((k) => source[k] !== undefined);
  if (source.streams && shorthand.length > 0) {
    throw new ConfigError(`${origin}: ${keyPrefix}.streams cannot be combined with ${shorthand.map((k) => `${keyPrefix}.${k}`).join(', ')}`,
      `move ${shorthand.join(', ')} into the entries of ${keyPrefix}.streams (or drop streams for a single stream)`);
  }
  const entries = source.streams
    ? source.streams.map((s, i) => ({ ...s, key: `${keyPrefix}.streams[${i}]` }))
    : [{
      channel: source.channel ?? SHORTHAND_DEFAULTS.channel, variant: source.variant ?? SHORTHAND_DEFAULTS.variant,
      releases: source.releases ?? [...SHORTHAND_DEFAULTS.releases], arches: source.arches ?? [...SHORTHAND_DEFAULTS.arches], key: keyPrefix,
    }];
  const seen = new Map<string, string>();
  return entries.map((entry) => {
    const id = streamId(entry);
    const earlier = seen.get(id);
    if (earlier) {
      throw new ConfigError(`${origin}: ${entry.key}: stream ${id} is already listed as ${earlier}`, `merge the releases and arches of both into one ${id} entry`);
    }
    seen.set(id, entry.key);
    const resolved = entry.releases.map((name, i) => {
      const release = resolveRelease(name);
      if (!release) {
        throw new ConfigError(
          `${origin}: ${entry.key}.releases[${i}]: ${JSON.stringify(name)} is neither a codename nor a known version`,
          `use a codename or version, e.g. ${knownReleases().slice(-5).join(', ')}`,
        );
      }
      const meant = suggestRelease(release.codename);
      if (meant) {
        throw new ConfigError(`${origin}: ${entry.key}.releases[${i}]: unknown release ${release.codename}; did you mean ${meant}?`,
          `correct ${entry.key}.releases[${i}] (known: ${knownReleases().slice(-5).join(', ')}, ...)`);
      }
      return release;
    });
    // `noble` and `24.04` name the same release: keep the first.
    const releases = resolved.filter((r, i) => resolved.findIndex((o) => o.codename === r.codename) === i);
    return { id, channel: entry.channel, variant: entry.variant, releases, arches: [...new Set(entry.arches)] };
  });
}
