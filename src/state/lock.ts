import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { SyncError } from '../errors.js';

export class AlreadyRunningError extends SyncError {
  constructor(lockFile: string, holder: string) {
    super('ALREADY_RUNNING', `another cloudimg-sync (${holder}) holds ${lockFile}`,
      'wait for it to finish or stop it; run one instance per stateDir');
  }
}

export interface StateLock {
  file: string;
  release(): void;
}

/** Whether a pid is a live process (a zombie counts as dead). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

/**
 * One instance per state directory: an exclusive lock file holding `pid@host`. A lock left by a process
 * that no longer runs on this host is stale and taken over.
 */
export function acquireStateLock(stateDir: string): StateLock {
  mkdirSync(stateDir, { recursive: true });
  const file = path.join(stateDir, 'cloudimg-sync.lock');
  const me = `${process.pid}@${hostname()}`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o644);
      writeSync(fd, `${me}\n`);
      closeSync(fd);
      let released = false;
      return {
        file,
        release() {
          if (released) return;
          released = true;
          try {
            if (readFileSync(file, 'utf8').trim() === me) unlinkSync(file);
          } catch {
            // already gone
          }
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new SyncError('STATE_UNAVAILABLE', `cannot create lock ${file}: ${(err as Error).message}`,
          'check that stateDir is writable by this user');
      }
      const holder = safeRead(file);
      const [pidText, host] = holder.split('@');
      const pid = Number(pidText);
      const stale = holder === '' || (host === hostname() && Number.isInteger(pid) && !processAlive(pid));
      if (!stale) throw new AlreadyRunningError(file, holder);
      try { unlinkSync(file); } catch { /* another process took it over first */ }
    }
  }
  throw new AlreadyRunningError(file, safeRead(file));
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}
