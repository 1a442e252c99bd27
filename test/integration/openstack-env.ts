/**
 * The real Keystone + Glance of test/openstack/up.sh, for integration tests.
 *
 * Reads the `export OS_...` lines up.sh wrote to `$OPENSTACK_DIR/openrc` (default
 * /tmp/cloudimg-sync-openstack) — never the caller's own OS_* variables, so a developer's real cloud is
 * never touched — and checks that Keystone answers. Without it, suites skip with the reason; with
 * CI=true they fail instead, so a CI run without OpenStack cannot pass by skipping.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { request } from 'undici';
import { freePort } from '../support/ports.js';

export const DEFAULT_OPENSTACK_DIR = '/tmp/cloudimg-sync-openstack';
const HARNESS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../openstack');

export interface OpenStackTestEnv {
  available: true;
  /** The OS_* variables from openrc (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, ...). */
  env: Readonly<Record<string, string>>;
  dir: string;
}
export type OpenStackAvailability = OpenStackTestEnv | { available: false; reason: string };

/** Parse `export NAME=value` lines (values as up.sh writes them: unquoted, or single/double quoted). */
export function parseOpenrc(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*(?:export\s+)?(OS_[A-Z0-9_]+)=(.*)$/.exec(line);
    if (!m?.[1]) continue;
    out[m[1]] = (m[2] ?? '').trim().replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1');
  }
  return out;
}

/** Find the harness's OpenStack and check it answers; never throws. */
export async function loadOpenStackEnv(dir = process.env.OPENSTACK_DIR || DEFAULT_OPENSTACK_DIR): Promise<OpenStackAvailability> {
  const openrc = path.join(dir, 'openrc');
  let text: string;
  try {
    text = await readFile(openrc, 'utf8');
  } catch {
    return { available: false, reason: `no ${openrc}: start the services with test/openstack/up.sh` };
  }
  const env = parseOpenrc(text);
  const authUrl = env.OS_AUTH_URL;
  if (!authUrl) return { available: false, reason: `${openrc} has no OS_AUTH_URL: rerun test/openstack/up.sh` };
  if (!/^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(authUrl)) {
    return { available: false, reason: `${openrc} points at ${authUrl}, not loopback: tests only use the local harness` };
  }
  try {
    const res = await request(authUrl, { headersTimeout: 3_000, bodyTimeout: 3_000 });
    await res.body.dump();
    if (res.statusCode !== 200) return { available: false, reason: `Keystone at ${authUrl} answered ${res.statusCode}: rerun test/openstack/up.sh` };
  } catch (err) {
    const code = (err as { code?: string }).code ?? (err as Error).message;
    return { available: false, reason: `Keystone at ${authUrl} is not answering (${code}): start it with test/openstack/up.sh` };
  }
  return { available: true, env, dir };
}

/**
 * `describe` for suites needing the real services: runs `fn` when they are up, else skips with the
 * reason — or, when CI=true, registers one failing test carrying the reason.
 */
export function describeWithOpenStack(name: string, openstack: OpenStackAvailability, fn: (os: OpenStackTestEnv) => void): void {
  if (openstack.available) {
    describe(name, () => fn(openstack));
  } else if (process.env.CI === 'true') {
    describe(name, () => {
      test('needs the real Keystone+Glance (CI=true: not skipping)', () => {
        throw new Error(`OpenStack unavailable: ${openstack.reason}`);
      });
    });
  } else {
    describe(name, { skip: `OpenStack unavailable: ${openstack.reason}` }, () => {});
  }
}


export interface ExtraOpenStack {
  env: Readonly<Record<string, string>>;
  dir: string;
  keystonePort: number;
  glancePort: number;
  /** Stop its services and delete its state dir. */
  stop(): Promise<void>;
}

/**
 * A second, private Keystone + Glance from up.sh (own state dir, free ports, given tunables), e.g. a
 * small image_size_cap. Takes ~15 s (no install: the packages come with the main instance).
 */
export async function startExtraOpenStack(dir: string, tunables: Readonly<Record<string, string>>): Promise<ExtraOpenStack> {
  const keystonePort = await freePort();
  const glancePort = await freePort();
  const env = {
    ...process.env,
    OPENSTACK_DIR: dir,
    OPENSTACK_KEYSTONE_PORT: String(keystonePort),
    OPENSTACK_GLANCE_PORT: String(glancePort),
    OPENSTACK_SKIP_INSTALL: '1',
    ...tunables,
  };
  const run = promisify(execFile);
  const stop = async () => {
    await run(path.join(HARNESS_DIR, 'down.sh'), ['--purge'], { env, timeout: 60_000 });
  };
  try {
    const { stdout } = await run(path.join(HARNESS_DIR, 'up.sh'), [], { env, timeout: 180_000 });
    return { env: parseOpenrc(stdout), dir, keystonePort, glancePort, stop };
  } catch (err) {
    await stop().catch(() => undefined);
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`up.sh for ${dir} failed: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
}
