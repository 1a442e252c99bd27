import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { AuthSettings } from '../../src/openstack/auth-config.js';
import { OpenStackError, cleanErrorMessage } from '../../src/openstack/errors.js';
import { GlanceClient } from '../../src/openstack/glance.js';
import { KeystoneSession } from '../../src/openstack/keystone.js';
import { isOpenStackError } from '../support/openstack-errors.js';

interface Seen {
  method: string;
  url: string;
  token: string | undefined;
  contentType: string | undefined;
  bytes: number;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

/**
 * One loopback server playing Keystone (/v3) and a Glance behind a path prefix (/image). Glance
 * answers come from `routes`, keyed by "METHOD /path"; tokens listed in `revoked` get 401.
 */
class FakeCloud {
  server: Server = createServer((req, res) => void this.handle(req, res));
  url = '';
  issued = 0;
  revoked = new Set<string>();
  seen: Seen[] = [];
  routes = new Map<string, Handler>();

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    if (req.url === '/v3/auth/tokens') {
      this.issued++;
      const now = Date.now();
      res.writeHead(201, { 'content-type': 'application/json', 'x-subject-token': `tok-${this.issued}` });
      res.end(JSON.stringify({
        token: {
          issued_at: new Date(now).toISOString(),
          expires_at: new Date(now + 3_600_000).toISOString(),
          catalog: [{ type: 'image', endpoints: [{ interface: 'public', region_id: 'R1', url: `${this.url}/image/v2/` }] }],
        },
      }));
      return;
    }
    const token = req.headers['x-auth-token'] as string | undefined;
    const path = (req.url ?? '').replace(/^\/image/, '');
    this.seen.push({ method: req.method ?? '', url: path, token, contentType: req.headers['content-type'], bytes: body.length });
    if (!token || this.revoked.has(token)) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': `Keystone uri="${this.url}"` });
      res.end(JSON.stringify({ message: 'This server could not verify that you are authorized<br /><br />\n\n\n', code: '401 Unauthorized', title: 'Unauthorized' }));
      return;
    }
    const route = this.routes.get(`${req.method} ${path.split('?')[0]}`);
    if (!route) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: `No image found with ID x<br /><br />\n\n\n`, code: '404 Not Found', title: 'Not Found' }));
      return;
    }
    route(req, res, body);
  }
}

function json(res: ServerResponse, status: number, doc: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(doc));
}

function image(id: string, extra: Record<string, unknown> = {}) {
  return { id, name: id, status: 'queued', visibility: 'private', tags: [], size: null, checksum: null, ...extra };
}


describe('GlanceClient against a Keystone+Glance stand-in', () => {
  let cloud: FakeCloud;
  let session: KeystoneSession;
  let glance: GlanceClient;

  before(async () => {
    cloud = await new FakeCloud().start();
  });
  after(async () => {
    await cloud.stop();
  });
  beforeEach(async () => {
    await session?.close();
    cloud.routes.clear();
    cloud.seen = [];
    const settings: AuthSettings = {
      authUrl: `${cloud.url}/v3`,
      identityVersion: 'v3',
      method: { type: 'password', username: 'u', userDomainName: 'Default', password: 'p' },
      scope: { projectName: 'images', projectDomainName: 'Default' },
      interface: 'public',
      insecure: false,
      source: 'test',
    };
    session = new KeystoneSession(settings);
    glance = new GlanceClient(session);
  });

  test('sends the token and Accept: application/json, under the catalog path prefix', async () => {
    cloud.routes.set('GET /v2/images/a', (req, res) => json(res, 200, image('a', { accept: req.headers.accept, custom_prop: 'x' })));
    const got = await glance.getImage('a');
    assert.equal(got.accept, 'application/json');
    assert.equal(got.custom_prop, 'x');
    assert.match(cloud.seen[0]?.token ?? '', /^tok-/);
  });

  test('a 401 re-authenticates once and retries with the new token', async () => {
    cloud.routes.set('GET /v2/images/a', (_req, res) => json(res, 200, image('a')));
    const stale = await session.getToken();
    cloud.revoked.add(stale);
    const issuedBefore = cloud.issued;
    await glance.getImage('a');
    assert.equal(cloud.issued, issuedBefore + 1);
    assert.deepEqual(cloud.seen.map((s) => s.token === stale), [true, false]);
  });

  test('a second 401 with a fresh token is GLANCE_UNAUTHORIZED, after exactly two tries', async () => {
    cloud.routes.set('GET /v2/images/a', (_req, res) => json(res, 401, { message: 'nope' }));
    await assert.rejects(glance.getImage('a'), isOpenStackError('GLANCE_UNAUTHORIZED', /keystone_authtoken/));
    assert.equal(cloud.seen.length, 2);
  });

  test('an upload refused with 401 is replayed when the data comes from a function', async () => {
    let received = 0;
    cloud.routes.set('PUT /v2/images/a/file', (_req, res, body) => {
      received = body.length;
      res.writeHead(204).end();
    });
    cloud.revoked.add(await session.getToken());
    let opened = 0;
    await glance.uploadImageData('a', () => {
      opened++;
      return Readable.from([Buffer.alloc(1000, 1), Buffer.alloc(24, 2)]);
    }, 1024);
    assert.equal(opened, 2);
    assert.equal(received, 1024);
    assert.equal(cloud.seen.at(-1)?.contentType, 'application/octet-stream');
  });

  test('an upload refused with 401 from a one-shot stream is GLANCE_TOKEN_REFUSED, retryable', async () => {
    cloud.revoked.add(await session.getToken());
    await assert.rejects(glance.uploadImageData('a', Readable.from([Buffer.alloc(10)]), 10), (err: unknown) => {
      isOpenStackError('GLANCE_TOKEN_REFUSED')(err);
      assert.equal((err as OpenStackError).retryable, true);
      return true;
    });
    const next = await session.getToken();
    assert.ok(!cloud.revoked.has(next), 'the refused token was dropped');
  });

  test('413 is IMAGE_TOO_LARGE naming image_size_cap, with Glance HTML noise removed', async () => {
    cloud.routes.set('PUT /v2/images/a/file', (_req, res) => {
      res.writeHead(413, { 'content-type': 'text/html' });
      res.end('<html>\n <head>\n  <title>413 Request Entity Too Large</title>\n </head>\n <body>\n  <h1>413 Request Entity Too Large</h1>\n  Image exceeds the storage quota: The size of the data 2048 will exceed the limit. 1024 bytes remaining.<br /><br />\n\n\n\n </body>\n</html>');
    });
    await assert.rejects(glance.uploadImageData('a', Readable.from([Buffer.alloc(2048)]), 2048), (err: unknown) => {
      isOpenStackError('IMAGE_TOO_LARGE', /image_size_cap/)(err);
      const msg = (err as Error).message;
      assert.match(msg, /413 Request Entity Too Large Image exceeds the storage quota: .* 1024 bytes remaining\.\)$/);
      assert.doesNotMatch(msg, /<|>|\n/);
      return true;
    });
  });

  test('5xx is retryable, 409 and 403 are not', async () => {
    cloud.routes.set('GET /v2/images/a', (_req, res) => json(res, 503, { message: 'busy' }));
    cloud.routes.set('PUT /v2/images/a/tags/t', (_req, res) => json(res, 409, { message: 'Image status transition from active to active is not allowed<br />' }));
    cloud.routes.set('PATCH /v2/images/a', (_req, res) => json(res, 403, { message: 'Attribute publicize_image is forbidden' }));
    await assert.rejects(glance.getImage('a'), (err: unknown) => isOpenStackError('GLANCE_HTTP_503')(err) && (err as OpenStackError).retryable);
    await assert.rejects(glance.addTag('a', 't'), (err: unknown) => isOpenStackError('GLANCE_CONFLICT', /not allowed$|not allowed \(/)(err) && !(err as OpenStackError).retryable);
    await assert.rejects(glance.patchImage('a', [{ op: 'replace', path: '/visibility', value: 'public' }]), isOpenStackError('GLANCE_FORBIDDEN', /publicize_image/));
  });

  test('getImage of a missing image is GLANCE_NOT_FOUND; deleteImage of one is fine', async () => {
    await assert.rejects(glance.getImage('gone'), isOpenStackError('GLANCE_NOT_FOUND', /No image found with ID x/));
    await glance.deleteImage('gone');
  });

  test('patchImage sends the json-patch content type and the ops', async () => {
    let sent: unknown;
    cloud.routes.set('PATCH /v2/images/a', (_req, res, body) => {
      sent = JSON.parse(body.toString());
      json(res, 200, image('a', { os_hidden: true }));
    });
    const got = await glance.patchImage('a', [{ op: 'add', path: '/os_hidden', value: true }, { op: 'remove', path: '/old' }]);
    assert.equal(got.os_hidden, true);
    assert.equal(cloud.seen[0]?.contentType, 'application/openstack-images-v2.1-json-patch');
    assert.deepEqual(sent, [{ op: 'add', path: '/os_hidden', value: true }, { op: 'remove', path: '/old' }]);
  });

  test('findImages follows `next` links, passes the filter, and asks again for hidden images', async () => {
    cloud.routes.set('GET /v2/images', (req, res) => {
      const q = new URL(req.url ?? '', 'http://x').searchParams;
      assert.equal(q.get('cis_release'), 'noble');
      if (q.get('os_hidden') === 'true') return json(res, 200, { images: [image('h1', { os_hidden: true })] });
      if (!q.get('marker')) return json(res, 200, { images: [image('a'), image('b')], next: '/v2/images?cis_release=noble&limit=2&marker=b' });
      if (q.get('marker') === 'b') return json(res, 200, { images: [image('c')], next: '/v2/images?cis_release=noble&limit=2&marker=c' });
      return json(res, 200, { images: [] });
    });
    const visible = await glance.findImages({ cis_release: 'noble' });
    assert.deepEqual(visible.map((i) => i.id), ['a', 'b', 'c']);
    const all = await glance.findImages({ cis_release: 'noble' }, { includeHidden: true });
    assert.deepEqual(all.map((i) => i.id), ['a', 'b', 'c', 'h1']);
  });

  test('waitForImport reports the failure message of the newest import task', async () => {
    cloud.routes.set('GET /v2/images/a', (_req, res) => json(res, 200, image('a')));
    cloud.routes.set('GET /v2/images/a/tasks', (_req, res) =>
      json(res, 200, {
        tasks: [
          { id: 't2', status: 'failure', message: 'Connection refused fetching http://127.0.0.1:1/x', created_at: '2026-01-02T00:00:00Z' },
          { id: 't1', status: 'success', message: '', created_at: '2026-01-01T00:00:00Z' },
        ],
      }),
    );
    await assert.rejects(glance.waitForImport('a', { intervalMs: 10 }), isOpenStackError('GLANCE_IMPORT_FAILED', /Connection refused/));
  });

  test('getImportInfo lists the import methods', async () => {
    cloud.routes.set('GET /v2/info/import', (_req, res) =>
      json(res, 200, { 'import-methods': { description: 'Import methods available.', type: 'array', value: ['glance-direct', 'web-download'] } }),
    );
    assert.deepEqual(await glance.getImportInfo(), { methods: ['glance-direct', 'web-download'] });
  });
});

describe('cleanErrorMessage', () => {
  const cases: [string, string, string][] = [
    ['Glance JSON with <br /> noise', '{"message": "No image found with ID 42<br /><br />\\n\\n\\n", "code": "404 Not Found"}', 'No image found with ID 42'],
    ['Keystone JSON', '{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}', 'The request you have made requires authentication.'],
    ['an HTML page', '<html><head><title>409 Conflict</title></head><body><h1>409 Conflict</h1>Image status transition from &#x27;active&#x27; is not allowed<br /><br /></body></html>', "409 Conflict Image status transition from 'active' is not allowed"],
    ['plain text', '  Service Unavailable\n', 'Service Unavailable'],
  ];
  for (const [name, body, want] of cases) {
    test(`flattens ${name}`, () => assert.equal(cleanErrorMessage(body), want));
  }
  test('cuts very long bodies', () => assert.equal(cleanErrorMessage('x'.repeat(1000), 50).length, 50));
});
