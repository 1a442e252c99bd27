/**
 * One instance per state directory. The lock is an SQLite write lock (an fcntl lock underneath) on a
 * dedicated database, `cloudimg-sync.lock`, held open for the life of the process: the kernel drops it
 * when the process dies, however it dies, so a `kill -9`, an OOM kill or a container restarting in a new
 * PID namespace or under another hostname never leaves a lock behind. No PID is ever compared.
 *
 * Who holds it (pid, host, since) is written next to it, `cloudimg-sync.lock.holder`, for the message a
 * refused second instance prints; that file is informative only and never decides anything.
 */
import { renameSync, readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { openDatabase, type Database } from './database.js';
import { SyncError } from '../errors.js';
import { ensurePrivateFileSync, makeDirSync, writeFileExclusiveSync } from '../local-files.js';

export const LOCK_FILE_NAME = 'cloudimg-sync.lock';
const HOLDER_SUFFIX = '.holder';
/** How long to wait for a lock held only for an instant (`check` probing it): never a running instance. */
const ACQUIRE_WAIT_MS = 500;

export class AlreadyRunningError extends SyncError {
  constructor(readonly lockFile: string, readonly holder: string) {
    super('ALREADY_RUNNING', `another cloudimg-sync (${holder}) holds ${lockFile}`,
      'wait for it to finish or stop it; run one instance per stateDir');
  }
}

export interface StateLock {
  file: string;
  release(): void;
}

export interface LockHolder {
  pid: number;
  host: string;
  since: string;
}

/** Takes the lock or throws AlreadyRunningError naming the holder; STATE_UNAVAILABLE if it cannot be created. */
export function acquireStateLock(stateDir: string): StateLock {
  const file = lockFile(stateDir);
  let db: Database.Database;
  try {
    makeDirSync(stateDir, 0o700);
    ensurePrivateFileSync(file, 0o600);
    db = openLockDatabase(file, ACQUIRE_WAIT_MS);
  } catch (err) {
    throw unavailable(file, err);
  }
  try {
    db.exec('BEGIN IMMEDIATE');
  } catch (err) {
    db.close();
    if (isBusy(err)) throw new AlreadyRunningError(file, describeHolder(readLockHolder(stateDir)));
    throw unavailable(file, err);
  }
  const holderFile = `${file}${HOLDER_SUFFIX}`;
  const me: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  try {
    writeFileExclusiveSync(`${holderFile}.tmp`, `${JSON.stringify(me)}\n`, 0o600);
    renameSync(`${holderFile}.tmp`, holderFile);
  } catch {
    // Only the message of a refused second instance loses its detail; the lock itself holds.
  }
  let released = false;
  return {
    file,
    release() {
      if (released) return;
      released = true;
      rmSync(holderFile, { force: true });
      db.close();
    },
  };
}

/**
 * Whether a live process holds the lock, and who, without taking it for longer than an instant (a
 * starting instance waits that instant out). For `check`, which never takes the lock.
 */
export function probeStateLock(stateDir: string): LockHolder | 'unknown' | undefined {
  const file = lockFile(stateDir);
  let db: Database.Database;
  try {
    db = openDatabase(file, { fileMustExist: true, timeout: 0 });
  } catch {
    return undefined;
  }
  try {
    db.exec('BEGIN IMMEDIATE');
    db.exec('ROLLBACK');
    return undefined;
  } catch (err) {
    return isBusy(err) ? readLockHolder(stateDir) ?? 'unknown' : undefined;
  } finally {
    db.close();
  }
}

export function describeHolder(holder: LockHolder | 'unknown' | undefined): string {
  return holder && holder !== 'unknown' ? `${holder.pid}@${holder.host}, since ${holder.since}` : 'holder unknown';
}

function readLockHolder(stateDir: string): LockHolder | undefined {
  try {
    const parsed = JSON.parse(readFileSync(`${lockFile(stateDir)}${HOLDER_SUFFIX}`, 'utf8')) as Partial<LockHolder>;
    if (typeof parsed.pid === 'number' && typeof parsed.host === 'string' && typeof parsed.since === 'string') {
      return { pid: parsed.pid, host: parsed.host, since: parsed.since };
    }
  } catch {
    // not written yet, or removed by a release in between
  }
  return undefined;
}

function lockFile(stateDir: string): string {
  return path.join(stateDir, LOCK_FILE_NAME);
}

/**
 * Opens the lock database. Versions before this one wrote `pid@host` text to the same path: such a file
 * is not a database and decides nothing any more, so it is replaced.
 */
function openLockDatabase(file: string, timeoutMs: number): Database.Database {
  for (let attempt = 0; ; attempt++) {
    const db = openDatabase(file, { timeout: timeoutMs });
    try {
      db.prepare('SELECT count(*) FROM sqlite_master').get();
      return db;
    } catch (err) {
      db.close();
      if ((err as { code?: string }).code !== 'SQLITE_NOTADB' || attempt > 0) throw err;
      rmSync(file, { force: true });
      ensurePrivateFileSync(file, 0o600);
    }
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}

function unavailable(file: string, err: unknown): SyncError {
  return new SyncError('STATE_UNAVAILABLE', `cannot open lock ${file}: ${(err as Error).message}`,
    'check that stateDir is writable by this user', { cause: err });
}
