import { z } from 'zod';
import type { Channel, Variant } from '../../image.js';
import { sourceSelection } from '../source.js';
import { DEFAULT_FTYPE } from './products.js';

/** Canonical's tree of a channel and variant: the folder holding `streams/v1/`. */
export function defaultStreamsUrl(channel: Channel, variant: Variant): string {
  return `https://cloud-images.ubuntu.com/${variant === 'minimal' ? 'minimal/' : ''}${channel === 'release' ? 'releases' : 'daily'}/`;
}

/**
 * `source: { type: simplestreams, url, ... }`: the listing source's selection keys (`streams`, or the one-stream
 * shorthand), with `url` the root of a simplestreams tree, the folder holding `streams/v1/` (default:
 * Canonical's tree of each stream's channel and variant, e.g. https://cloud-images.ubuntu.com/releases/; a
 * `url` names one tree, so one stream), and `ftype` the item to take from each version.
 */
export const simplestreamsSourceSchema = sourceSelection.extend({
  type: z.literal('simplestreams'),
  url: z.string().url().optional(),
  ftype: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, . _ - only').default(DEFAULT_FTYPE),
}).strict();

export type SimplestreamsSourceConfig = z.output<typeof simplestreamsSourceSchema>;
