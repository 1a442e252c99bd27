import { z } from 'zod';
import { targetName } from '../target.js';

export const directoryTargetSchema = z.strictObject({
  name: targetName,
  type: z.literal('directory'),
  path: z.string().min(1),
});

export type DirectoryTargetConfig = z.infer<typeof directoryTargetSchema>;
