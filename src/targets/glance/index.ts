/** The Glance target type: images in OpenStack Glance v2 through Keystone (see target.ts). */
import { defineTargetType } from '../target.js';
import { glanceTargetSchema } from './schema.js';
import { GlanceTarget } from './target.js';

export const glanceTargetType = defineTargetType({
  type: 'glance',
  schema: glanceTargetSchema,
  create: (config, options) => new GlanceTarget(config, { env: options.env, log: options.log, keep: options.keep, http: options.http }),
});
