import { z } from 'zod';
import { targetCommon } from '../target.js';

/** `{ name, type: mirror, path }`: the cloud-images layout under `path`, for a static web server to serve. */
export const mirrorTargetSchema = z.strictObject({
  ...targetCommon,
  type: z.literal('mirror'),
  path: z.string().min(1),
});

export type MirrorTargetConfig = z.infer<typeof mirrorTargetSchema>;
