import { createRequire } from 'node:module';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { PrettyOptions } from 'pino-pretty';
import { isEventName, type EventRecord } from './events.js';

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

/** One log line as consumers see it: the JSON documented in docs/events.md. */
export interface LogRecord {
  level: string;
  time: string;
  msg?: string;
  event?: string;
  [key: string]: unknown;
}

/**
 * A consumer of events in the same process (metrics, health, progress bars): it gets every catalogued event
 * (src/events.ts) as a structured record, the fields an operator's `jq` reads plus the child logger's context,
 * handed over as the event is logged, never parsed back from a log line. Not redacted: taps stay in-process.
 */
export type LogTap = (record: EventRecord) => void;

/** Something drawn on the terminal between log lines (a progress bar): cleared before a line, redrawn after. */
export interface LiveLine {
  clear(): void;
  redraw(): void;
  /** Records the live line already shows, not printed as log lines. */
  shows(record: LogRecord): boolean;
}

export interface LogOptions {
  level?: string;
  /** Where lines go; default stdout. */
  destination?: DestinationStream;
  /** Human output via pino-pretty instead of JSON lines. */
  pretty?: boolean;
  /** In-process consumers; they see every event of level info and above even when `level` is higher. */
  taps?: LogTap[];
  liveLine?: LiveLine;
}

/** Output settings the CLI chooses once (`--pretty`, a TTY) for every logger a command creates. */
let processDefaults: Omit<LogOptions, 'level' | 'destination'> = {};

export function setLogDefaults(defaults: Omit<LogOptions, 'level' | 'destination'>): void {
  processDefaults = { ...defaults };
}

/** A logger plus a handle to change its output level later (SIGHUP reload). */
export interface LogHandle {
  log: Logger;
  setLevel(level: string): void;
}

export function createLogger(options: LogOptions = {}): Logger {
  return createLogHandle(options).log;
}

export function createLogHandle(options: LogOptions = {}): LogHandle {
  const merged: LogOptions = { ...processDefaults, ...options };
  const level = merged.level ?? process.env.CLOUDIMG_SYNC_LOG_LEVEL ?? 'info';
  const out = merged.destination ?? pino.destination({ dest: 1, sync: true });
  const taps = merged.taps ?? [];
  const plain = taps.length === 0 && !merged.pretty && !merged.liveLine;
  const sink = plain ? undefined : new LogSink(out, level, merged.pretty ?? false, merged.liveLine, taps.length === 0);
  const hooks = {
    /** After the line is written: the taps get the event, then the live line is redrawn with what they changed. */
    logMethod(this: Logger, args: unknown[], method: (...a: unknown[]) => void, levelNumber: number) {
      method.apply(this, args);
      const [fields, msg] = args;
      if (fields && typeof fields === 'object' && isEventName((fields as { event?: unknown }).event)) {
        const record = redactRecord({
          ...this.bindings(), ...(fields as object), level: pino.levels.labels[levelNumber] ?? 'info', time: new Date().toISOString(),
          ...(typeof msg === 'string' ? { msg } : {}),
        }) as EventRecord;
        for (const tap of taps) {
          try {
            tap(record);
          } catch {
            // A consumer's bug must not break logging (or the sync writing the log).
          }
        }
      }
      merged.liveLine?.redraw();
    },
  };
  const log = pino(
    {
      ...(taps.length > 0 ? { hooks: hooks as never } : {}),
      name: 'cloudimg-sync',
      level: sink && taps.length > 0 ? lowerLevel(level, 'info') : level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    sink ?? out,
  );
  return {
    log,
    setLevel(next) {
      if (sink) sink.outputLevel = levelValue(next);
      log.level = sink && taps.length > 0 ? lowerLevel(next, 'info') : next;
    },
  };
}

/** Keys whose values never reach a tap (as REDACT_PATHS for the output): anything under `auth`, passwords, secrets, tokens. */
const SECRET_KEYS = new Set(['password', 'secret', 'token', 'applicationCredentialSecret', 'x-auth-token', 'x-subject-token']);

function redactRecord(value: unknown, depth = 0, underAuth = false): unknown {
  if (value === null || typeof value !== 'object' || depth > 4) return value;
  if (Array.isArray(value)) return value.map((v) => redactRecord(v, depth + 1, underAuth));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (underAuth && (v === null || typeof v !== 'object')) out[k] = '[redacted]';
    else if (SECRET_KEYS.has(k)) out[k] = '[redacted]';
    else out[k] = redactRecord(v, depth + 1, underAuth || k === 'auth');
  }
  return out;
}

/** A logger that writes nothing: for library use and tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

function levelValue(label: string): number {
  return pino.levels.values[label] ?? pino.levels.values.info!;
}

function lowerLevel(a: string, b: string): string {
  return levelValue(a) <= levelValue(b) ? a : b;
}

/**
 * Writes each JSON line to the output (as is, or prettified) when it meets the output level, clearing and
 * redrawing a live line around it. Synchronous, like pino's own sync destination: nothing is lost on exit.
 */
class LogSink implements DestinationStream {
  outputLevel: number;
  private readonly prettify: ((record: LogRecord) => string) | undefined;

  constructor(
    private readonly out: DestinationStream,
    level: string,
    pretty: boolean,
    private readonly liveLine: LiveLine | undefined,
    /** False when the logger's hook redraws, after the taps. */
    private readonly redraws: boolean,
  ) {
    this.outputLevel = levelValue(level);
    this.prettify = pretty ? loadPrettifier() : undefined;
  }

  write(chunk: string): void {
    for (const line of chunk.split('\n')) {
      if (line) this.writeLine(line);
    }
  }

  private writeLine(line: string): void {
    let record: LogRecord;
    try {
      record = JSON.parse(line) as LogRecord;
    } catch {
      this.out.write(`${line}\n`);
      return;
    }
    if (levelValue(record.level) >= this.outputLevel && !this.liveLine?.shows(record)) {
      this.liveLine?.clear();
      this.out.write(this.prettify ? this.prettify(record) : `${line}\n`);
    }
    if (this.redraws) this.liveLine?.redraw();
  }


}

/** pino-pretty is loaded only when asked for: a daemon writing JSON never pays for it. */
function loadPrettifier(): (record: LogRecord) => string {
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as { prettyFactory: (o: PrettyOptions) => (record: LogRecord) => string };
  return prettyFactory({ colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname,name', singleLine: true });
}
