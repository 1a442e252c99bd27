import { createRequire } from 'node:module';
import type * as NodeCron from 'node-cron';

/** node-cron, loaded when a schedule is first checked or started: `sync --once` without `schedule:` never needs it. */
let nodeCron: typeof NodeCron | undefined;
export const cron = (): typeof NodeCron => (nodeCron ??= createRequire(import.meta.url)('node-cron') as typeof NodeCron);

/** node-cron's expressions: 5 fields, or 6 with seconds first. */
export function cronExpressionValid(expression: string): boolean {
  return cron().validate(expression);
}
