import { existsSync } from 'node:fs';
import { ensurePrivateFileSync, makeDirSync } from '../local-files.js';
import path from 'node:path';
import { openDatabase, type Database } from './database.js';
import { SyncError } from '../errors.js';
import { imageKey, type UpstreamImage } from '../image.js';
import { MIGRATIONS } from './migrations.js';
import {
  assertImageTransition,
  assertPublicationTransition,
  type ImageState,
  type PublicationState,
} from './transitions.js';

export interface PublicationRecord {
  target: string;
  state: PublicationState;
  ref: string | null;
  errorCode: string | null;
  error: string | null;
  attempts: number;
  hiddenAt: string | null;
  updatedAt: string;
}

export interface ImageRecord extends Omit<UpstreamImage, 'signed' | 'sizeBytes' | 'supportEol'> {
  id: number;
  key: string;
  sizeBytes: number | null;
  state: ImageState;
  localPath: string | null;
  /** Further digests of the verified file by algorithm (e.g. md5, sha512), when its download computed them. */
  digests: Digests | null;
  errorCode: string | null;
  error: string | null;
  attempts: number;
  discoveredAt: string;
  updatedAt: string;
  publications: Record<string, PublicationRecord>;
}

/** Hex digests of a verified file by algorithm name; which ones is up to the targets. */
export type Digests = Readonly<Record<string, string>>;

/** `incomplete`: nothing failed, but a configured arch has no image in any recent serial upstream. */
export type RunResult = 'running' | 'ok' | 'incomplete' | 'failed' | 'aborted' | 'interrupted';

/** What a run found upstream besides images: missing arches, releases past end of life. */
export interface RunFindings {
  incomplete: Array<{ stream: string; release: string; arch: string; reason: string }>;
  eol: Array<{ stream: string; release: string; eol?: string; gone: boolean; imported: boolean }>;
}

export interface RunCounts {
  discovered: number;
  downloaded: number;
  published: number;
  retired: number;
  failed: number;
  bytesDown: number;
}

export interface RunRecord extends RunCounts, Partial<RunFindings> {
  id: number;
  startedAt: string;
  finishedAt: string | null;
  result: RunResult;
  error: string | null;
}

export interface CachedResponse {
  etag: string | null;
  lastModified: string | null;
  body: Buffer;
}

interface ImageRow {
  id: number; key: string; channel: string; variant: string; release: string; version: string; arch: string;
  serial: string; file_name: string; url: string; sha256: string; size_bytes: number | null; state: string;
  local_path: string | null; error_code: string | null; error: string | null; attempts: number;
  discovered_at: string; updated_at: string;
}
interface PublicationRow {
  image_id: number; target: string; state: string; ref: string | null; error_code: string | null;
  error: string | null; attempts: number; hidden_at: string | null; updated_at: string;
}

export const STATE_FILE_NAME = 'cloudimg-sync.db';

/** The SQLite record of every image, publication and run. One writer: the process holding the state lock. */
export class StateStore {
  private constructor(private readonly db: Database.Database, readonly file: string, readonly readOnly = false) {}

  /**
   * A reader next to the lock holder (`plan`): sees committed state, writes nothing. Caches of upstream
   * answers are not stored (a no-op); any other write is a bug and throws. A missing database reads as empty.
   */
  static openReadOnly(stateDir: string): StateStore {
    const file = path.join(stateDir, STATE_FILE_NAME);
    if (!existsSync(file)) {
      const empty = new StateStore(openDatabase(':memory:'), file);
      empty.migrate();
      return new StateStore(empty.db, file, true);
    }
    let db: Database.Database;
    try {
      db = openDatabase(file, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 5000');
    } catch (err) {
      throw new SyncError('STATE_UNAVAILABLE', `cannot read state database ${file}: ${(err as Error).message}`,
        'check that stateDir is readable by this user');
    }
    const store = new StateStore(db, file, true);
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version !== MIGRATIONS.length) {
      db.close();
      throw new SyncError('STATE_SCHEMA_MISMATCH', `state database ${file} has schema ${version}, this version uses ${MIGRATIONS.length}`,
        version < MIGRATIONS.length ? 'run `sync --once` or the daemon of this version once to migrate it' : 'run the newer cloudimg-sync that wrote it');
    }
    return store;
  }

  static open(stateDir: string): StateStore {
    const file = path.join(stateDir, STATE_FILE_NAME);
    let db: Database.Database;
    try {
      // Private whatever the umask: the state names every image, ref and error (SQLite gives -wal/-shm the same mode).
      makeDirSync(stateDir, 0o700);
      ensurePrivateFileSync(file, 0o600);
      db = openDatabase(file);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
    } catch (err) {
      throw new SyncError('STATE_UNAVAILABLE', `cannot open state database ${file}: ${(err as Error).message}`,
        'check that stateDir exists, is writable by this user and is on a disk with free space');
    }
    const store = new StateStore(db, file);
    store.migrate();
    return store;
  }

  close(): void {
    this.db.close();
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    if (current > MIGRATIONS.length) {
      throw new SyncError('STATE_TOO_NEW', `state database ${this.file} has schema ${current}, this version knows ${MIGRATIONS.length}`,
        'run the newer cloudimg-sync that wrote it, or point stateDir elsewhere');
    }
    for (let version = current; version < MIGRATIONS.length; version++) {
      this.write(() => {
        this.db.exec(MIGRATIONS[version]!);
        this.db.pragma(`user_version = ${version + 1}`);
      });
    }
  }

  /** Every write is one transaction; a full disk or a locked file becomes one clear error. */
  private write<T>(fn: () => T): T {
    if (this.readOnly) throw new SyncError('STATE_READ_ONLY', `state ${this.file} was opened read-only`, 'a read-only command must not write state (a bug: please report it)');
    try {
      return this.db.transaction(fn)();
    } catch (err) {
      if (err instanceof SyncError) throw err;
      const code = (err as { code?: string }).code ?? '';
      if (code === 'SQLITE_FULL' || code === 'SQLITE_IOERR' || code.startsWith('SQLITE_IOERR')) {
        throw new SyncError('STATE_WRITE_FAILED', `cannot write ${this.file}: ${(err as Error).message}`,
          'free disk space on the stateDir filesystem; nothing was lost, the step is redone next run', { cause: err });
      }
      if (code === 'SQLITE_BUSY') {
        throw new SyncError('STATE_BUSY', `state database ${this.file} is locked by another process`,
          'run only one cloudimg-sync per stateDir', { cause: err });
      }
      throw err;
    }
  }

  // ---------------------------------------------------------------- runs

  startRun(now = new Date()): number {
    return this.write(() => {
      // A run still `running` when a new one starts was cut short by a crash or kill.
      this.db.prepare(`UPDATE runs SET result = 'interrupted', finished_at = ? WHERE result = 'running'`).run(now.toISOString());
      return Number(this.db.prepare(`INSERT INTO runs (started_at, result) VALUES (?, 'running')`).run(now.toISOString()).lastInsertRowid);
    });
  }

  finishRun(id: number, result: RunResult, counts: RunCounts, error: string | null = null, now = new Date(),
    findings: RunFindings = { incomplete: [], eol: [] }): void {
    this.write(() => {
      this.db.prepare(
        `UPDATE runs SET finished_at = ?, result = ?, discovered = ?, downloaded = ?, published = ?, retired = ?,
           failed = ?, bytes_down = ?, error = ?, incomplete = ?, eol = ? WHERE id = ?`,
      ).run(now.toISOString(), result, counts.discovered, counts.downloaded, counts.published, counts.retired,
        counts.failed, counts.bytesDown, error, JSON.stringify(findings.incomplete), JSON.stringify(findings.eol), id);
    });
  }

  /**
   * Housekeeping at the end of a cycle: prune the runs beyond the newest `keepRuns`, then checkpoint the WAL
   * into the database file and truncate it (without this the WAL only grows while a reader is open).
   */
  compact(keepRuns: number): { prunedRuns: number; walCheckpointed: boolean } {
    const prunedRuns = this.write(() => Number(this.db.prepare(
      `DELETE FROM runs WHERE id NOT IN (SELECT id FROM runs ORDER BY id DESC LIMIT ?)`,
    ).run(keepRuns).changes));
    const [checkpoint] = this.db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
    return { prunedRuns, walCheckpointed: checkpoint?.busy === 0 };
  }

  listRuns(limit = 20): RunRecord[] {
    const rows = this.db.prepare(`SELECT * FROM runs ORDER BY id DESC LIMIT ?`).all(limit) as Array<Record<string, unknown>>;
    return rows.map((r) => ({
      id: r.id as number, startedAt: r.started_at as string, finishedAt: r.finished_at as string | null,
      result: r.result as RunResult, discovered: r.discovered as number, downloaded: r.downloaded as number,
      published: r.published as number, retired: r.retired as number, failed: r.failed as number,
      bytesDown: r.bytes_down as number, error: r.error as string | null,
      incomplete: parseJsonArray(r.incomplete) as RunFindings['incomplete'], eol: parseJsonArray(r.eol) as RunFindings['eol'],
    }));
  }

  // ---------------------------------------------------------------- images

  /** Record an upstream image; returns whether it was new. Checksums come from the signed list each run. */
  recordDiscovered(image: UpstreamImage, now = new Date()): boolean {
    const key = imageKey(image);
    return this.write(() => {
      const existing = this.db.prepare(`SELECT sha256, state FROM images WHERE key = ?`).get(key) as
        { sha256: string; state: ImageState } | undefined;
      if (!existing) {
        this.db.prepare(
          `INSERT INTO images (key, channel, variant, release, version, arch, serial, file_name, url, sha256, state,
             discovered_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'discovered', ?, ?)`,
        ).run(key, image.channel, image.variant, image.release, image.version, image.arch, image.serial, image.fileName,
          image.url, image.sha256, now.toISOString(), now.toISOString());
        return true;
      }
      if (existing.sha256 !== image.sha256) {
        // Upstream re-signed a different file under the same serial: what we hold no longer counts.
        this.db.prepare(
          `UPDATE images SET sha256 = ?, url = ?, file_name = ?, state = 'discovered', local_path = NULL,
             updated_at = ? WHERE key = ?`,
        ).run(image.sha256, image.url, image.fileName, now.toISOString(), key);
        this.db.prepare(`DELETE FROM image_digests WHERE image_id = (SELECT id FROM images WHERE key = ?)`).run(key);
      }
      return false;
    });
  }

  getImage(key: string): ImageRecord | undefined {
    const row = this.db.prepare(`SELECT * FROM images WHERE key = ?`).get(key) as ImageRow | undefined;
    return row ? this.withPublications([row])[0] : undefined;
  }

  listImages(): ImageRecord[] {
    const rows = this.db.prepare(`SELECT * FROM images ORDER BY release, arch, channel, variant, serial`).all() as ImageRow[];
    return this.withPublications(rows);
  }

  setImageState(
    key: string,
    to: ImageState,
    patch: {
      localPath?: string | null; sizeBytes?: number; digests?: Digests | null; error?: { code: string; message: string } | null;
    } = {},
    now = new Date(),
  ): void {
    this.write(() => {
      const row = this.db.prepare(`SELECT state FROM images WHERE key = ?`).get(key) as { state: ImageState } | undefined;
      if (!row) throw new SyncError('STATE_UNKNOWN_IMAGE', `no image ${key} in state`, 'this is a bug; please report it');
      assertImageTransition(row.state, to, key);
      const sets = ['state = ?', 'updated_at = ?'];
      const args: unknown[] = [to, now.toISOString()];
      if (patch.localPath !== undefined) { sets.push('local_path = ?'); args.push(patch.localPath); }
      if (patch.sizeBytes !== undefined) { sets.push('size_bytes = ?'); args.push(patch.sizeBytes); }
      if (to === 'downloading') sets.push('attempts = attempts + 1');
      if (patch.error !== undefined) {
        sets.push('error_code = ?', 'error = ?');
        args.push(patch.error?.code ?? null, patch.error?.message ?? null);
      } else if (to === 'verified') {
        sets.push('error_code = NULL', 'error = NULL', 'attempts = 0');
      }
      this.db.prepare(`UPDATE images SET ${sets.join(', ')} WHERE key = ?`).run(...args, key);
      if (patch.digests !== undefined) {
        this.db.prepare(`DELETE FROM image_digests WHERE image_id = (SELECT id FROM images WHERE key = ?)`).run(key);
        const insert = this.db.prepare(`INSERT INTO image_digests (image_id, algorithm, value) SELECT id, ?, ? FROM images WHERE key = ?`);
        for (const [algorithm, value] of Object.entries(patch.digests ?? {})) insert.run(algorithm, value, key);
      }
    });
  }

  /**
   * Where the verified file of an image is cached: set once the copy is durable, null once it is released
   * (every target has it). The record stays verified either way.
   */
  setLocalPath(key: string, localPath: string | null, now = new Date()): void {
    this.write(() => {
      this.db.prepare(`UPDATE images SET local_path = ?, updated_at = ? WHERE key = ?`).run(localPath, now.toISOString(), key);
    });
  }

  // ---------------------------------------------------------------- publications

  setPublication(
    key: string,
    target: string,
    to: PublicationState,
    patch: { ref?: string | null; error?: { code: string; message: string } | null } = {},
    now = new Date(),
  ): void {
    this.write(() => {
      const image = this.db.prepare(`SELECT id FROM images WHERE key = ?`).get(key) as { id: number } | undefined;
      if (!image) throw new SyncError('STATE_UNKNOWN_IMAGE', `no image ${key} in state`, 'this is a bug; please report it');
      const row = this.db.prepare(`SELECT state FROM publications WHERE image_id = ? AND target = ?`).get(image.id, target) as
        { state: PublicationState } | undefined;
      assertPublicationTransition(row?.state, to, `${key}@${target}`);
      const ts = now.toISOString();
      if (!row) {
        this.db.prepare(
          `INSERT INTO publications (image_id, target, state, ref, attempts, updated_at) VALUES (?, ?, ?, ?, 1, ?)`,
        ).run(image.id, target, to, patch.ref ?? null, ts);
        return;
      }
      const sets = ['state = ?', 'updated_at = ?'];
      const args: unknown[] = [to, ts];
      if (patch.ref !== undefined) { sets.push('ref = ?'); args.push(patch.ref); }
      if (to === 'publishing' && row.state !== 'publishing') sets.push('attempts = attempts + 1');
      if (to === 'hidden') { sets.push('hidden_at = ?'); args.push(ts); }
      if (to === 'published') sets.push('hidden_at = NULL', 'error_code = NULL', 'error = NULL');
      if (patch.error !== undefined) {
        sets.push('error_code = ?', 'error = ?');
        args.push(patch.error?.code ?? null, patch.error?.message ?? null);
      }
      this.db.prepare(`UPDATE publications SET ${sets.join(', ')} WHERE image_id = ? AND target = ?`).run(...args, image.id, target);
    });
  }

  // ---------------------------------------------------------------- conditional GET cache

  getCachedResponse(url: string): CachedResponse | undefined {
    const row = this.db.prepare(`SELECT etag, last_modified, body FROM http_cache WHERE url = ?`).get(url) as
      { etag: string | null; last_modified: string | null; body: Buffer } | undefined;
    return row ? { etag: row.etag, lastModified: row.last_modified, body: row.body } : undefined;
  }

  putCachedResponse(url: string, response: CachedResponse, now = new Date()): void {
    if (this.readOnly) return;
    this.write(() => {
      this.db.prepare(
        `INSERT INTO http_cache (url, etag, last_modified, body, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (url) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified,
           body = excluded.body, updated_at = excluded.updated_at, verified_with = NULL, parsed = NULL`,
      ).run(url, response.etag, response.lastModified, response.body, now.toISOString());
    });
  }

  /** What a cached response was verified with (see discover.ts), while its body is unchanged. */
  getCachedVerification(url: string): string | undefined {
    const row = this.db.prepare(`SELECT verified_with FROM http_cache WHERE url = ?`).get(url) as { verified_with: string | null } | undefined;
    return row?.verified_with ?? undefined;
  }

  setCachedVerification(url: string, verifiedWith: string): void {
    if (this.readOnly) return;
    this.write(() => {
      this.db.prepare(`UPDATE http_cache SET verified_with = ? WHERE url = ?`).run(verifiedWith, url);
    });
  }

  /** What a cached body was parsed into (JSON, see discover.ts), while the body is unchanged. */
  getCachedParse(url: string): string | undefined {
    const row = this.db.prepare(`SELECT parsed FROM http_cache WHERE url = ?`).get(url) as { parsed: string | null } | undefined;
    return row?.parsed ?? undefined;
  }

  setCachedParse(url: string, parsed: string): void {
    if (this.readOnly) return;
    this.write(() => {
      this.db.prepare(`UPDATE http_cache SET parsed = ? WHERE url = ?`).run(parsed, url);
    });
  }

  // ---------------------------------------------------------------- rows -> records

  private withPublications(rows: ImageRow[]): ImageRecord[] {
    if (rows.length === 0) return [];
    const pubs = this.db.prepare(`SELECT * FROM publications WHERE image_id IN (${rows.map(() => '?').join(',')})`)
      .all(...rows.map((r) => r.id)) as PublicationRow[];
    const digestRows = this.db.prepare(`SELECT image_id, algorithm, value FROM image_digests WHERE image_id IN (${rows.map(() => '?').join(',')})`)
      .all(...rows.map((r) => r.id)) as Array<{ image_id: number; algorithm: string; value: string }>;
    return rows.map((r) => {
      const mine = digestRows.filter((d) => d.image_id === r.id);
      const digests = mine.length > 0 ? Object.fromEntries(mine.map((d) => [d.algorithm, d.value])) : null;
      const publications: Record<string, PublicationRecord> = {};
      for (const p of pubs.filter((p) => p.image_id === r.id)) {
        publications[p.target] = {
          target: p.target, state: p.state as PublicationState, ref: p.ref, errorCode: p.error_code, error: p.error,
          attempts: p.attempts, hiddenAt: p.hidden_at, updatedAt: p.updated_at,
        };
      }
      return {
        id: r.id, key: r.key, channel: r.channel as ImageRecord['channel'], variant: r.variant as ImageRecord['variant'],
        release: r.release, version: r.version, arch: r.arch as ImageRecord['arch'], serial: r.serial, fileName: r.file_name,
        url: r.url, sha256: r.sha256, sizeBytes: r.size_bytes, state: r.state as ImageState,
        localPath: r.local_path, digests, errorCode: r.error_code, error: r.error, attempts: r.attempts,
        discoveredAt: r.discovered_at, updatedAt: r.updated_at, publications,
      };
    });
  }
}

function parseJsonArray(value: unknown): unknown[] {
  if (typeof value !== 'string') return [];
  try {
    const parsed: unknown = JSON.parse(value);
    return Array.isArray(parsed) ? parsed : [];
  } catch {
    return [];
  }
}
