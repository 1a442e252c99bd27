import { pino, type Logger } from 'pino';

export type { Logger };

/** Paths that may hold secrets anywhere in a log event; pino replaces them before writing. */
export const REDACT_PATHS = [
  'password', '*.password', '*.*.password',
  'secret', '*.secret', '*.*.secret',
  'token', '*.token', '*.*.token',
  'headers["x-auth-token"]', '*.headers["x-auth-token"]',
  'headers["x-subject-token"]', '*.headers["x-subject-token"]',
  'applicationCredentialSecret', '*.applicationCredentialSecret', '*.*.applicationCredentialSecret',
  'auth.*', '*.auth.*',
];

export interface LogOptions {
  level?: string;
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LogOptions = {}): Logger {
  const level = options.level ?? process.env.CLOUDIMG_SYNC_LOG_LEVEL ?? 'info';
  return pino(
    {
      name: 'cloudimg-sync',
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** A logger that writes nothing: for library use and tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
