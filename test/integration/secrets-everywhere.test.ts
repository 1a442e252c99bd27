/**
 * One secret string in every place a secret can be given (OS_PASSWORD, clouds.yaml + secure.yaml, a target's
 * `auth`, the source URL of a private mirror, the proxy URL), every command run at --log-level trace, including failing
 * auth and an invalid config under SIGHUP; then everything written anywhere is searched for it: all output
 * and logs, the state database, the directory target and cache, and the Glance images' properties.
 * Needs the real Keystone+Glance (run under flock /tmp/cloudimg-it.lock).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { KeystoneSession } from '../../src/openstack/keystone.js';
import { GlanceClient } from '../../src/openstack/glance.js';
import { resolveAuthSettings } from '../../src/openstack/auth-config.js';
import { PROP } from '../../src/targets/glance/image-spec.js';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';
import { describeWithOpenStack, loadOpenStackEnv } from './openstack-env.js';
import { freePort } from '../support/ports.js';

const openstack = await loadOpenStackEnv();
const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
const run = randomUUID().slice(0, 8);
/** The secret: a working password of a Keystone user made for this test, and the private mirror's password. */
const SECRET = `trace-${randomBytes(9).toString('hex')}`;
const USER = `cloudimg-secret-${run}`;
const MIRROR_USER = 'mirror-reader';

interface Output { args: string; code: number | null; stdout: string; stderr: string }

function runCli(args: string[], env: Record<string, string>): Promise<Output> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('close', (code) => resolve({ args: args.join(' '), code, stdout, stderr }));
  });
}


/** A Keystone user of the admin project whose password is SECRET (made, or its password reset). */
async function ensureSecretUser(env: Readonly<Record<string, string>>): Promise<void> {
  const ks = env.OS_AUTH_URL!.replace(/\/+$/, '');
  const call = async (method: 'GET' | 'POST' | 'PUT' | 'PATCH', p: string, token?: string, body?: unknown) => {
    const res = await request(`${ks}${p}`, {
      method, body: body === undefined ? undefined : JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...(token ? { 'x-auth-token': token } : {}) },
    });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`${method} ${p} -> ${res.statusCode}`);
    return { headers: res.headers, json: text ? JSON.parse(text) as Record<string, any> : {} }; // eslint-disable-line @typescript-eslint/no-explicit-any
  };
  const auth = await call('POST', '/auth/tokens', undefined, { auth: {
    identity: { methods: ['password'], password: { user: { name: env.OS_USERNAME, domain: { name: env.OS_USER_DOMAIN_NAME ?? 'Default' }, password: env.OS_PASSWORD } } },
    scope: { project: { name: env.OS_PROJECT_NAME, domain: { name: env.OS_PROJECT_DOMAIN_NAME ?? 'Default' } } },
  } });
  const token = String(auth.headers['x-subject-token']);
  const project = (await call('GET', `/projects?name=${env.OS_PROJECT_NAME}`, token)).json.projects[0].id as string;
  const role = (await call('GET', '/roles?name=admin', token)).json.roles[0].id as string;
  const found = (await call('GET', `/users?name=${USER}`, token)).json.users as Array<{ id: string }>;
  const userId = found[0]?.id ?? (await call('POST', '/users', token, { user: { name: USER, domain_id: 'default', password: SECRET } })).json.user.id as string;
  await call('PUT', `/projects/${project}/users/${userId}/roles/${role}`, token);
}

/** Every file below `dir`, with its bytes. */
function filesUnder(dir: string): Array<{ file: string; bytes: Buffer }> {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile())
    .map((d) => ({ file: path.join(d.parentPath, d.name), bytes: readFileSync(path.join(d.parentPath, d.name)) }));
}

describeWithOpenStack('no secret leaves: one secret in every place, every command at trace', openstack, (os) => {
  let world: SyncWorld;
  let glance: GlanceClient;
  let session: KeystoneSession;
  const targets = { env: `sec-env-${run}`, cloud: `sec-cloud-${run}`, auth: `sec-auth-${run}` };
  const outputs: Output[] = [];

  before(async () => {
    await ensureSecretUser(os.env);
    session = new KeystoneSession(resolveAuthSettings({ env: os.env, files: new Map(), cwd: '/', homeDir: '/nonexistent' }));
    glance = new GlanceClient(session);
    world = await createSyncWorld({ mirror: { releases: [{ codename: 'noble', serials: ['20261120'], channels: ['release'] }] } });
    world.mirror.inject({ path: /.*/, fault: 'require-auth', username: MIRROR_USER, password: SECRET });
  });
  after(async () => {
    for (const name of Object.values(targets)) {
      for (const image of await glance.findImages({ [PROP.target]: name }, { includeHidden: true })) await glance.deleteImage(image.id);
    }
    await session.close();
    await world.close();
  });

  test('zero hits in output, logs, state, files and Glance properties', { timeout: 300_000 }, async () => {
    const dir = world.dir;
    const common = `auth_url: ${os.env.OS_AUTH_URL}, username: ${USER}, project_name: ${os.env.OS_PROJECT_NAME}, user_domain_name: Default, project_domain_name: Default`;
    writeFileSync(path.join(dir, 'clouds.yaml'), `clouds:\n  c1:\n    region_name: ${os.env.OS_REGION_NAME ?? 'RegionOne'}\n    auth: { auth_url: ${os.env.OS_AUTH_URL}, username: ${USER}, project_name: ${os.env.OS_PROJECT_NAME}, user_domain_name: Default, project_domain_name: Default }\n`);
    writeFileSync(path.join(dir, 'secure.yaml'), `clouds:\n  c1:\n    auth: { password: ${SECRET} }\n`);
    const env: Record<string, string> = {
      OS_AUTH_URL: os.env.OS_AUTH_URL!, OS_USERNAME: USER, OS_PASSWORD: SECRET, OS_PROJECT_NAME: os.env.OS_PROJECT_NAME!,
      OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default', OS_REGION_NAME: os.env.OS_REGION_NAME ?? 'RegionOne',
      OS_CLIENT_CONFIG_FILE: path.join(dir, 'clouds.yaml'), OS_CLIENT_SECURE_FILE: path.join(dir, 'secure.yaml'),
    };
    const sourceUrl = world.mirror.url.replace('http://', `http://${MIRROR_USER}:${SECRET}@`);
    const port = await freePort();
    const config = (targetLines: string[], extra = '') => [
      `source: { url: "${sourceUrl}", keyring: "${world.mirror.keyringPath}", releases: [noble], arches: [amd64] }`,
      `stateDir: "${path.join(dir, 'state')}"`,
      `cacheDir: "${path.join(dir, 'cache')}"`,
      // A proxy with the secret as its password: configured (and logged, masked, once per cycle), with the
      // loopback hosts of this test exempt so that the mirror and the cloud are still reached directly.
      `http: { retries: 1, retryBaseDelayMs: 10, retryMaxDelayMs: 20, proxy: "http://${MIRROR_USER}:${SECRET}@proxy.invalid:3128", noProxy: "127.0.0.1,localhost" }`,
      `health: { port: ${port} }`,
      'runOnStart: false',
      'targets:', ...targetLines, extra,
    ].join('\n');
    const good = [
      `  - { name: ${targets.env}, type: glance }`,
      `  - { name: ${targets.cloud}, type: glance, cloud: c1 }`,
      `  - { name: ${targets.auth}, type: glance, auth: { ${common}, password: "${SECRET}" } }`,
      `  - { name: local, type: directory, path: "${path.join(dir, 'images')}" }`,
    ];
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, config(good));
    const cli = async (...args: string[]) => {
      const out = await runCli(['--config', file, '--log-level', 'trace', ...args], env);
      outputs.push(out);
      return out;
    };

    assert.equal((await cli('check')).code, 0, outputs.at(-1)!.stdout + outputs.at(-1)!.stderr);
    assert.equal((await cli('plan')).code, 0, outputs.at(-1)!.stderr);
    const sync = await cli('sync', '--once');
    assert.equal(sync.code, 0, sync.stderr);
    assert.match(sync.stdout, new RegExp(`"source":"http://${MIRROR_USER}:\\*\\*\\*@127\\.0\\.0\\.1:\\d+/?"`), 'the source URL is shown masked');
    assert.ok(world.mirror.requests.some((r) => r.status === 200 && r.path.endsWith('.img')), 'the private mirror served the image: Basic auth was sent');
    assert.match(sync.stdout, /"event":"http\.proxy"/, 'the proxy with the secret in its URL was in use and logged');
    await cli('status', '--json');
    await cli('history');

    // Failing auth: a wrong user with the secret as password, in the target's auth and in the environment.
    writeFileSync(file, config([`  - { name: ${targets.auth}-bad, type: glance, auth: { ${common.replace(USER, `${USER}-nobody`)}, password: "${SECRET}" } }`]));
    assert.notEqual((await cli('check')).code, 0);
    assert.notEqual((await cli('sync', '--once')).code, 0);
    // Invalid configurations naming the secret: as a number where a string is wanted, in a duplicate target.
    writeFileSync(file, config([...good, `  - { name: local, type: glance, auth: { password: "${SECRET}" } }`]));
    assert.equal((await cli('sync', '--once')).code, 2);

    // The daemon, reloaded with an invalid config on SIGHUP.
    writeFileSync(file, config(good));
    const daemon = spawn(process.execPath, ['--import', 'tsx', CLI, '--config', file, '--log-level', 'trace', 'daemon'], { env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let dout = '';
    daemon.stdout.on('data', (d: Buffer) => { dout += d.toString(); });
    daemon.stderr.on('data', (d: Buffer) => { dout += d.toString(); });
    for (let i = 0; i < 100 && !dout.includes('daemon.started'); i++) await sleep(100);
    writeFileSync(file, config([...good, `  - { name: ${targets.env}, type: glance, auth: { password: ${SECRET.length}, project_name: "${SECRET}" } }`]));
    daemon.kill('SIGHUP');
    for (let i = 0; i < 100 && !dout.includes('daemon.reload.failed'); i++) await sleep(100);
    daemon.kill('SIGTERM');
    await new Promise((resolve) => daemon.once('close', resolve));
    outputs.push({ args: 'daemon', code: 0, stdout: dout, stderr: '' });
    assert.match(dout, /daemon\.reload\.failed/);

    const basic = Buffer.from(`${MIRROR_USER}:${SECRET}`).toString('base64');
    const hits: string[] = [];
    const search = (where: string, text: string) => {
      if (text.includes(SECRET) || text.includes(basic)) hits.push(where);
    };
    for (const o of outputs) {
      search(`stdout of ${o.args}`, o.stdout);
      search(`stderr of ${o.args}`, o.stderr);
    }
    // Configuration and credential files are where the secret belongs; everything else must not hold it.
    for (const { file: f, bytes } of filesUnder(dir)) {
      if (['config.yaml', 'clouds.yaml', 'secure.yaml'].includes(path.basename(f))) continue;
      search(f, bytes.toString('latin1'));
    }
    for (const name of Object.values(targets)) {
      const images = await glance.findImages({ [PROP.target]: name }, { includeHidden: true });
      assert.ok(images.length > 0, `${name} has its image`);
      for (const image of images) {
        search(`Glance image ${image.id} of ${name}`, JSON.stringify(image));
        assert.ok(!String(image[PROP.source] ?? '').includes('@'), `cloudimg_sync_source carries no credentials: ${String(image[PROP.source])}`);
      }
    }
    assert.deepEqual(hits, [], 'the secret was found in these places');
  });
});
