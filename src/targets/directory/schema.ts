import { z } from 'zod';
import { targetCommon } from '../target.js';

export const directoryTargetSchema = z.strictObject({
  ...targetCommon,
  type: z.literal('directory'),
  path: z.string().min(1),
  /** Mode of published images and manifests, octal in quotes (YAML reads a bare 0644 as the number 644). */
  mode: z.string()
    .regex(/^0?[0-7]{3}$/, 'an octal mode in quotes, e.g. "0644"')
    .refine((m) => (Number.parseInt(m, 8) & 0o002) === 0, 'must not be world-writable: anyone could swap a verified image')
    .default('0644'),
});

export type DirectoryTargetConfig = z.infer<typeof directoryTargetSchema>;
