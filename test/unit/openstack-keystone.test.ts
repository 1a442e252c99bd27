import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createLogger } from '../../src/log.js';
import type { AuthSettings } from '../../src/openstack/auth-config.js';
import { OpenStackError } from '../../src/openstack/errors.js';
import { KeystoneSession, findImageEndpoint, glanceRoot, type CatalogEndpoint } from '../../src/openstack/keystone.js';
import { isOpenStackError } from '../support/openstack-errors.js';

const PASSWORD = 'correct-horse';

/** A Keystone stand-in: v3 password/app-credential/token auth, /v2.0/tokens, scope failures, a catalog. */
class FakeKeystone {
  server: Server;
  url = '';
  authCount = 0;
  lifetimeS = 3600;
  bodies: unknown[] = [];
  /** Tokens Keystone no longer accepts on GETs (revoked). */
  revoked = new Set<string>();
  /** The token each GET of /v3/auth/projects carried. */
  projectGets: string[] = [];

  constructor(server?: Server) {
    this.server = server ?? createHttpServer();
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res));
  }

  async start(scheme = 'http'): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `${scheme}://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections?.();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private catalog() {
    return [
      { type: 'identity', endpoints: [{ interface: 'public', region_id: 'RegionOne', url: `${this.url}/v3/` }] },
      {
        type: 'image',
        endpoints: [
          { interface: 'public', region_id: 'RegionOne', region: 'RegionOne', url: 'http://glance-one:9292/' },
          { interface: 'internal', region_id: 'RegionOne', region: 'RegionOne', url: 'http://glance-one-int:9292/v2' },
          { interface: 'public', region_id: 'RegionTwo', region: 'RegionTwo', url: 'http://glance-two:9292' },
        ],
      },
    ];
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = '';
    for await (const chunk of req) raw += String(chunk);
    const body = raw ? (JSON.parse(raw) as Record<string, any>) : {};
    const send = (status: number, doc: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(doc));
    };
    const unauthorized = () => send(401, { error: { code: 401, message: 'The request you have made requires authentication.', title: 'Unauthorized' } });
    const issued = new Date();
    const expires = new Date(issued.getTime() + this.lifetimeS * 1000);
    const iso = (d: Date) => d.toISOString().replace('Z', '000Z');

    if (req.method === 'POST' && req.url === '/v3/auth/tokens') {
      this.bodies.push(body);
      const identity = body.auth?.identity ?? {};
      const ok =
        identity.password?.user?.password === PASSWORD ||
        identity.application_credential?.secret === 'ac-secret' ||
        identity.token?.id === 'existing-token';
      if (!ok) return unauthorized();
      const scope = body.auth?.scope?.project;
      if (scope && scope.name !== 'images' && scope.id !== 'p-images') return unauthorized();
      this.authCount++;
      return send(
        201,
        { token: { issued_at: iso(issued), expires_at: iso(expires), ...(scope || identity.application_credential ? { catalog: this.catalog() } : {}) } },
        { 'x-subject-token': `tok-${this.authCount}` },
      );
    }
    if (req.method === 'GET' && req.url === '/v3/auth/tokens') {
      if (req.headers['x-subject-token'] !== 'existing-token') return send(404, { error: { message: 'Could not find token' } });
      return send(200, { token: { issued_at: iso(issued), expires_at: iso(expires), catalog: this.catalog() } });
    }
    if (req.method === 'GET' && req.url === '/v3/auth/projects') {
      this.projectGets.push(String(req.headers['x-auth-token']));
      if (this.revoked.has(String(req.headers['x-auth-token']))) return unauthorized();
      return send(200, { projects: [{ id: 'p-images', name: 'images' }, { id: 'p-other', name: 'other' }] });
    }
    if (req.method === 'POST' && req.url === '/v2.0/tokens') {
      this.bodies.push(body);
      const creds = body.auth?.passwordCredentials;
      if (creds?.password !== PASSWORD) return unauthorized();
      this.authCount++;
      return send(200, {
        access: {
          token: { id: `v2tok-${this.authCount}`, issued_at: issued.toISOString().slice(0, 19), expires: expires.toISOString().replace(/\.\d+Z$/, 'Z'), tenant: { name: body.auth.tenantName } },
          serviceCatalog: [{ type: 'image', name: 'glance', endpoints: [{ region: 'RegionOne', publicURL: 'http://glance-v2:9292', internalURL: 'http://glance-v2-int:9292' }] }],
        },
      });
    }
    send(404, { error: { message: 'not here' } });
  }
}

function settingsFor(ks: FakeKeystone, patch: Partial<AuthSettings> = {}): AuthSettings {
  return {
    authUrl: `${ks.url}/v3`,
    identityVersion: 'v3',
    method: { type: 'password', username: 'sync', userDomainName: 'Default', password: PASSWORD },
    scope: { projectName: 'images', projectDomainName: 'Default' },
    interface: 'public',
    insecure: false,
    source: 'test',
    ...patch,
  };
}

/** A logger whose lines end up in `lines`. */
function capturingLogger() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { log: createLogger({ level: 'debug', destination }), lines };
}


describe('KeystoneSession against a Keystone stand-in', () => {
  let ks: FakeKeystone;
  before(async () => {
    ks = await new FakeKeystone().start();
  });
  after(async () => {
    await ks.stop();
  });

  test('authenticates once and serves the token from cache', async () => {
    const session = new KeystoneSession(settingsFor(ks));
    const before = ks.authCount;
    const [a, b] = await Promise.all([session.getToken(), session.getToken()]);
    assert.equal(a, b);
    assert.equal(await session.getToken(), a);
    assert.equal(ks.authCount - before, 1);
    await session.close();
  });

  test('renews the token within the margin before it expires', async () => {
    let now = 1_000_000;
    const session = new KeystoneSession(settingsFor(ks), { now: () => now, renewMarginMs: 60_000 });
    const first = await session.getToken();
    now += 3_600_000 - 61_000;
    assert.equal(await session.getToken(), first, 'still outside the margin');
    now += 2_000;
    assert.notEqual(await session.getToken(), first, 'renewed inside the margin');
    await session.close();
  });

  test('caps the renewal margin at a quarter of a short token lifetime', async () => {
    ks.lifetimeS = 60;
    try {
      let now = 0;
      const session = new KeystoneSession(settingsFor(ks), { now: () => now, renewMarginMs: 60_000 });
      const first = await session.getToken();
      now += 44_000;
      assert.equal(await session.getToken(), first);
      now += 2_000;
      assert.notEqual(await session.getToken(), first);
      await session.close();
    } finally {
      ks.lifetimeS = 3600;
    }
  });

  test('invalidate(token) forces a new token, but not when another call already renewed it', async () => {
    const session = new KeystoneSession(settingsFor(ks));
    const first = await session.getToken();
    session.invalidate(first);
    const second = await session.getToken();
    assert.notEqual(second, first);
    session.invalidate(first);
    assert.equal(await session.getToken(), second);
    await session.close();
  });

  test('authorizedGet: a 401 gets one fresh token and one more try; other statuses are the caller\'s', async () => {
    const session = new KeystoneSession(settingsFor(ks));
    const refused = await session.getToken();
    ks.revoked.add(refused);
    ks.projectGets = [];
    const res = await session.authorizedGet(`${ks.url}/v3/auth/projects`);
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.equal(ks.projectGets.length, 2);
    assert.equal(ks.projectGets[0], refused);
    assert.notEqual(ks.projectGets[1], refused, 'the second try carries a fresh token');
    // Revoked again: the one retry is spent, the 401 goes to the caller instead of looping.
    ks.revoked.add(await session.getToken());
    const again = await session.authorizedGet(`${ks.url}/v3/auth/projects`);
    await again.body.dump();
    assert.equal(again.statusCode, 200);
    ks.revoked.add(await session.getToken());
    ks.revoked.add(`tok-${ks.authCount + 1}`);
    const twice = await session.authorizedGet(`${ks.url}/v3/auth/projects`);
    await twice.body.dump();
    assert.equal(twice.statusCode, 401);
    const missing = await session.authorizedGet(`${ks.url}/v3/nothing`);
    await missing.body.dump();
    assert.equal(missing.statusCode, 404);
    await session.close();
  });

  test('finds the image endpoint of the configured region and interface, without /v2', async () => {
    const cases: [Partial<AuthSettings>, string][] = [
      [{}, 'http://glance-one:9292'],
      [{ regionName: 'RegionTwo' }, 'http://glance-two:9292'],
      [{ interface: 'internal' }, 'http://glance-one-int:9292'],
      [{ imageEndpointOverride: 'http://override:9292' }, 'http://override:9292'],
    ];
    for (const [patch, want] of cases) {
      const session = new KeystoneSession(settingsFor(ks, patch));
      assert.equal(await session.imageEndpoint(), want, JSON.stringify(patch));
      await session.close();
    }
  });

  test('an unknown region is a clear error listing the regions that exist', async () => {
    const session = new KeystoneSession(settingsFor(ks, { regionName: 'Atlantis' }));
    await assert.rejects(session.imageEndpoint(), isOpenStackError('KEYSTONE_UNKNOWN_REGION', /Atlantis.*RegionOne, RegionTwo.*OS_REGION_NAME/));
    await session.close();
  });

  test('a wrong password is KEYSTONE_AUTH_FAILED naming the user, never the password', async () => {
    const session = new KeystoneSession(
      settingsFor(ks, { method: { type: 'password', username: 'sync', userDomainName: 'Default', password: 'wrong-pw' } }),
    );
    await assert.rejects(session.getToken(), (err: unknown) => {
      isOpenStackError('KEYSTONE_AUTH_FAILED', /user "sync" in domain Default.*OS_PASSWORD/)(err);
      assert.doesNotMatch((err as Error).message, /wrong-pw/);
      return true;
    });
    await session.close();
  });

  test('valid credentials with an unknown project are KEYSTONE_SCOPE_FAILED listing usable projects', async () => {
    const session = new KeystoneSession(settingsFor(ks, { scope: { projectName: 'nope', projectDomainName: 'Default' } }));
    await assert.rejects(session.getToken(), isOpenStackError('KEYSTONE_SCOPE_FAILED', /"nope".*images, other/));
    await session.close();
  });

  test('sends application credentials and existing tokens the way identity v3 wants them', async () => {
    const ac = new KeystoneSession(settingsFor(ks, { method: { type: 'applicationCredential', id: 'ac-1', secret: 'ac-secret' }, scope: undefined }));
    await ac.getToken();
    assert.deepEqual(ks.bodies.at(-1), {
      auth: { identity: { methods: ['application_credential'], application_credential: { id: 'ac-1', secret: 'ac-secret' } } },
    });
    assert.equal(await ac.imageEndpoint(), 'http://glance-one:9292');
    await ac.close();

    const rescoped = new KeystoneSession(settingsFor(ks, { method: { type: 'token', token: 'existing-token' }, scope: { projectId: 'p-images' } }));
    await rescoped.getToken();
    assert.deepEqual(ks.bodies.at(-1), {
      auth: { identity: { methods: ['token'], token: { id: 'existing-token' } }, scope: { project: { id: 'p-images' } } },
    });
    await rescoped.close();

    const bare = new KeystoneSession(settingsFor(ks, { method: { type: 'token', token: 'existing-token' }, scope: undefined }));
    assert.equal(await bare.getToken(), 'existing-token');
    assert.equal(await bare.imageEndpoint(), 'http://glance-one:9292');
    await bare.close();
  });

  test('identity v2.0: password token from /v2.0/tokens, catalog from serviceCatalog, one warning', async () => {
    const { log, lines } = capturingLogger();
    const session = new KeystoneSession(
      settingsFor(ks, {
        authUrl: `${ks.url}/v2.0`,
        identityVersion: 'v2.0',
        method: { type: 'password', username: 'legacy', password: PASSWORD },
        scope: { projectName: 'tenant-a' },
      }),
      { log },
    );
    assert.match(await session.getToken(), /^v2tok-/);
    assert.deepEqual(ks.bodies.at(-1), { auth: { passwordCredentials: { username: 'legacy', password: PASSWORD }, tenantName: 'tenant-a' } });
    assert.equal(await session.imageEndpoint(), 'http://glance-v2:9292');
    session.invalidate();
    await session.getToken();
    const warnings = lines.filter((l) => l.includes('"event":"keystone.v2.deprecated"'));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /"level":"warn"/);
    assert.ok(!lines.join('').includes(PASSWORD), 'the password is never logged');
    assert.ok(!lines.join('').includes('v2tok-'), 'the token is never logged');
    await session.close();
  });

  test('identity v2.0 with a wrong password is KEYSTONE_AUTH_FAILED', async () => {
    const session = new KeystoneSession(
      settingsFor(ks, { authUrl: `${ks.url}/v2.0`, identityVersion: 'v2.0', method: { type: 'password', username: 'x', password: 'no' }, scope: { projectName: 't' } }),
    );
    await assert.rejects(session.getToken(), isOpenStackError('KEYSTONE_AUTH_FAILED', /OS_PROJECT_NAME/));
    await session.close();
  });

  test('a v2.0 URL on a v3-only Keystone is KEYSTONE_NOT_FOUND pointing at the auth URL', async () => {
    const session = new KeystoneSession(
      settingsFor(ks, { authUrl: `${ks.url}/nothing/v2.0`, identityVersion: 'v2.0', method: { type: 'password', username: 'x', password: PASSWORD }, scope: { projectName: 't' } }),
    );
    await assert.rejects(session.getToken(), isOpenStackError('KEYSTONE_NOT_FOUND', /OS_AUTH_URL/));
    await session.close();
  });
});

describe('KeystoneSession transport failures', () => {
  test('a closed port is KEYSTONE_UNREACHABLE, retryable', async () => {
    const ks = await new FakeKeystone().start();
    const settings = settingsFor(ks);
    await ks.stop();
    const session = new KeystoneSession(settings);
    await assert.rejects(session.getToken(), (err: unknown) => {
      isOpenStackError('KEYSTONE_UNREACHABLE', /ECONNREFUSED.*OS_AUTH_URL/)(err);
      assert.equal((err as OpenStackError).retryable, true);
      return true;
    });
    await session.close();
  });

  test('an untrusted certificate is KEYSTONE_TLS_FAILED; OS_CACERT makes it work', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ks-tls-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    try {
      await promisify(execFile)('openssl', [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
        '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      ]);
    } catch {
      t.skip('openssl is not installed');
      return;
    }
    const ks = await new FakeKeystone(createHttpsServer({ key: await readFile(key), cert: await readFile(cert) })).start('https');
    t.after(() => ks.stop());

    const untrusted = new KeystoneSession(settingsFor(ks));
    await assert.rejects(untrusted.getToken(), isOpenStackError('KEYSTONE_TLS_FAILED', /OS_CACERT/));
    await untrusted.close();

    const trusted = new KeystoneSession(settingsFor(ks, { cacertPath: cert }));
    assert.match(await trusted.getToken(), /^tok-/);
    await trusted.close();

    await assert.throws(() => new KeystoneSession(settingsFor(ks, { cacertPath: path.join(dir, 'missing.pem') })), /cannot read the CA bundle/);
  });
});

describe('findImageEndpoint', () => {
  const catalog: CatalogEndpoint[] = [
    { serviceType: 'identity', interface: 'public', region: 'R1', url: 'http://k/v3' },
    { serviceType: 'image', interface: 'public', region: 'R1', url: 'https://img.example/image/v2/' },
  ];
  const base = { authUrl: 'http://k/v3', interface: 'public' as const };

  test('keeps a path prefix and drops a version suffix', () => {
    assert.equal(findImageEndpoint(catalog, base), 'https://img.example/image');
    assert.equal(glanceRoot('http://g:9292/v2.1'), 'http://g:9292');
  });
  test('no image service is KEYSTONE_NO_IMAGE_ENDPOINT naming what the catalog has', () => {
    assert.throws(() => findImageEndpoint(catalog.slice(0, 1), base), isOpenStackError('KEYSTONE_NO_IMAGE_ENDPOINT', /lists: identity/));
  });
  test('a missing interface is KEYSTONE_NO_IMAGE_ENDPOINT naming the interfaces there are', () => {
    assert.throws(() => findImageEndpoint(catalog, { ...base, interface: 'admin' }), isOpenStackError('KEYSTONE_NO_IMAGE_ENDPOINT', /no admin endpoint.*has: public/));
  });
});
