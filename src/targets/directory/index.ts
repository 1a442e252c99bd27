/** The directory target type: images as plain files under a local path (see target.ts). */
import path from 'node:path';
import { defineTargetType } from '../target.js';
import { directoryTargetSchema } from './schema.js';
import { DirectoryTarget } from './target.js';

export const directoryTargetType = defineTargetType({
  type: 'directory',
  schema: directoryTargetSchema,
  create: (config) => new DirectoryTarget(config.name, path.resolve(config.path), Number.parseInt(config.mode, 8)),
});
