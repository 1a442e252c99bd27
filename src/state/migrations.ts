/** Versioned schema: migration N brings PRAGMA user_version from N-1 to N. Never edit a released step; add one. */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE images (
    id            INTEGER PRIMARY KEY,
    key           TEXT NOT NULL UNIQUE,
    channel       TEXT NOT NULL,
    variant       TEXT NOT NULL,
    release       TEXT NOT NULL,
    version       TEXT NOT NULL,
    arch          TEXT NOT NULL,
    serial        TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    url           TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    size_bytes    INTEGER,
    state         TEXT NOT NULL,
    local_path    TEXT,
    error_code    TEXT,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    discovered_at TEXT NOT NULL,
    updated_at    TEXT NOT NULL
  );
  CREATE INDEX images_by_series ON images (channel, variant, release, arch, serial);
  CREATE TABLE publications (
    image_id   INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    target     TEXT NOT NULL,
    state      TEXT NOT NULL,
    ref        TEXT,
    error_code TEXT,
    error      TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    hidden_at  TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (image_id, target)
  );
  CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    result      TEXT NOT NULL,
    discovered  INTEGER NOT NULL DEFAULT 0,
    downloaded  INTEGER NOT NULL DEFAULT 0,
    published   INTEGER NOT NULL DEFAULT 0,
    retired     INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    bytes_down  INTEGER NOT NULL DEFAULT 0,
    error       TEXT
  );
  CREATE TABLE http_cache (
    url           TEXT PRIMARY KEY,
    etag          TEXT,
    last_modified TEXT,
    body          BLOB NOT NULL,
    updated_at    TEXT NOT NULL
  );
  `,
  // 2: remember that a cached SHA256SUMS verified, and against which keyring, so an unchanged list is not
  // verified again every cycle. Replacing the body (a 200) clears it.
  `ALTER TABLE http_cache ADD COLUMN verified_with TEXT;`,
  // 3: md5 and sha512 of the verified file, computed in the download's pass for targets that compare them
  // with what they hold afterwards (Glance's checksum and os_hash_value), so no upload has to hash again.
  `ALTER TABLE images ADD COLUMN md5 TEXT;
   ALTER TABLE images ADD COLUMN sha512 TEXT;`,
  // 4: what a cached body was read as (a listing's serial folders, as JSON), so a cycle that gets a 304 does
  // not parse the same page again (nor load the HTML parser). Replacing the body (a 200) clears it.
  `ALTER TABLE http_cache ADD COLUMN parsed TEXT;`,
  // 5: digests of the verified file as a map (algorithm -> hex), whatever the targets declare; the md5/sha512
  // columns of 3 move into it.
  `CREATE TABLE image_digests (
     image_id  INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
     algorithm TEXT NOT NULL,
     value     TEXT NOT NULL,
     PRIMARY KEY (image_id, algorithm)
   );
   INSERT INTO image_digests (image_id, algorithm, value) SELECT id, 'md5', md5 FROM images WHERE md5 IS NOT NULL;
   INSERT INTO image_digests (image_id, algorithm, value) SELECT id, 'sha512', sha512 FROM images WHERE sha512 IS NOT NULL;
   ALTER TABLE images DROP COLUMN md5;
   ALTER TABLE images DROP COLUMN sha512;`,
  // 6: what a run found upstream besides images (JSON arrays): configured arches no recent serial has
  // (the run is `incomplete`) and configured releases past their end of life. `status` shows the last run's.
  `ALTER TABLE runs ADD COLUMN incomplete TEXT;
   ALTER TABLE runs ADD COLUMN eol TEXT;`,
];
