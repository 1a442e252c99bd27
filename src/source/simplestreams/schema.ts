import { z } from 'zod';
import { ARCHES, CHANNELS, VARIANTS, type Channel, type Variant } from '../image.js';
import { DEFAULT_FTYPE } from './products.js';

/** Canonical's tree of a channel and variant: the folder holding `streams/v1/`. */
export function defaultStreamsUrl(channel: Channel, variant: Variant): string {
  return `https://cloud-images.ubuntu.com/${variant === 'minimal' ? 'minimal/' : ''}${channel === 'release' ? 'releases' : 'daily'}/`;
}

/**
 * `source: { type: simplestreams, url, ... }`: the listing source's selection keys, with `url` the root of
 * a simplestreams tree (default: Canonical's tree of the channel and variant) and `ftype` the item to take.
 */
export const simplestreamsSourceSchema = z
  .strictObject({
    type: z.literal('simplestreams'),
    url: z.string().url().optional(),
    channel: z.enum(CHANNELS).default('release'),
    variant: z.enum(VARIANTS).default('server'),
    // YAML reads 20.10 as the number 20.1: put the two decimals back.
    releases: z.array(z.union([z.string(), z.number().transform((n) => n.toFixed(2))])).min(1).default(['noble']),
    arches: z.array(z.enum(ARCHES)).min(1).default(['amd64']),
    verifySignature: z.boolean().default(true),
    keyring: z.string().optional(),
    /** The item type to take from each version: `disk1.img` is the qcow2 disk. */
    ftype: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, . _ - only').default(DEFAULT_FTYPE),
  })
  .transform((s) => ({ ...s, url: s.url ?? defaultStreamsUrl(s.channel, s.variant) }));

export type SimplestreamsSourceConfig = z.infer<typeof simplestreamsSourceSchema>;
