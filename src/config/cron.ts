import { validate } from 'node-cron';

/** Whether node-cron accepts the expression (5 fields, or 6 with seconds first). */
export function cronExpressionValid(expression: string): boolean {
  return validate(expression);
}
