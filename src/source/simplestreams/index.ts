/** The simplestreams source type: see source.ts. */
import { defineSourceType } from '../source.js';
import { simplestreamsSourceSchema } from './schema.js';
import { SimplestreamsSource } from './source.js';

export const simplestreamsSourceType = defineSourceType({
  type: 'simplestreams',
  schema: simplestreamsSourceSchema,
  create: (config, common) => new SimplestreamsSource(config, common),
});
