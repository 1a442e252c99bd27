import { z } from 'zod';
import { CHANNELS, VARIANTS } from '../../image.js';
import { sourceSelection } from '../source.js';

/** `source: { type: listing, ... }`: cloud-images.ubuntu.com's HTML folder listings and signed SHA256SUMS (the default type). */
export const listingSourceSchema = sourceSelection.extend({
  type: z.literal('listing'),
  channel: z.enum(CHANNELS).default('release'),
  variant: z.enum(VARIANTS).default('server'),
}).strict();

export type ListingSourceConfig = z.output<typeof listingSourceSchema>;
