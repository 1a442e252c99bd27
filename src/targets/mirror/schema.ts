import { z } from 'zod';

/** `{ name, type: mirror, path }`: the cloud-images layout under `path`, for a static web server to serve. */
export const mirrorTargetSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
  type: z.literal('mirror'),
  path: z.string().min(1),
});
export type MirrorTargetConfig = z.infer<typeof mirrorTargetSchema>;
