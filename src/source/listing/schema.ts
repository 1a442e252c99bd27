import { z } from 'zod';
import { sourceSelection } from '../source.js';

/** `source: { type: listing, ... }`: cloud-images.ubuntu.com's HTML folder listings and signed SHA256SUMS (the default type). */
export const listingSourceSchema = sourceSelection.extend({
  type: z.literal('listing'),
}).strict();

export type ListingSourceConfig = z.output<typeof listingSourceSchema>;
