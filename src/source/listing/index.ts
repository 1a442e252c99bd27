/** The listing source type (the default): see source.ts. */
import { defineSourceType } from '../source.js';
import { listingSourceSchema } from './schema.js';
import { ListingSource } from './source.js';

export const listingSourceType = defineSourceType({
  type: 'listing',
  schema: listingSourceSchema,
  create: (config, common) => new ListingSource(config, common),
});
