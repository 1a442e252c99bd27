import { z } from 'zod';
import { targetCommon } from '../target.js';

export const directoryTargetSchema = z.strictObject({
  ...targetCommon,
  type: z.literal('directory'),
  path: z.string().min(1),
});

export type DirectoryTargetConfig = z.infer<typeof directoryTargetSchema>;
