/** The mirror target type: the cloud-images layout with upstream's signed SHA256SUMS, for air-gapped sites (see mirror.ts). */
import path from 'node:path';
import { defineTargetType } from '../target.js';
import { MirrorTarget } from './mirror.js';
import { mirrorTargetSchema } from './schema.js';

export const mirrorTargetType = defineTargetType({
  type: 'mirror',
  schema: mirrorTargetSchema,
  create: (config) => new MirrorTarget(config.name, path.resolve(config.path)),
});
