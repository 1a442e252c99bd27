import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { request } from 'undici';
import { resolveAuthSettings, type AuthSettings } from '../../src/openstack/auth-config.js';
import { KeystoneSession } from '../../src/openstack/keystone.js';
import { describeWithOpenStack, loadOpenStackEnv } from './openstack-env.js';
import { isOpenStackError } from '../support/openstack-errors.js';

const openstack = await loadOpenStackEnv();


describeWithOpenStack('KeystoneSession against the real Keystone+Glance', openstack, (os) => {
  const settings = (env: Record<string, string> = {}): AuthSettings =>
    resolveAuthSettings({ env: { ...os.env, ...env }, files: new Map(), cwd: '/', homeDir: '/nonexistent' });

  test('password auth from the harness openrc yields a token and Glance from the catalog', async () => {
    const session = new KeystoneSession(settings());
    try {
      assert.match(await session.getToken(), /^gAAAA/);
      assert.match(await session.imageEndpoint(), /^http:\/\/127\.0\.0\.1:\d+$/);
    } finally {
      await session.close();
    }
  });

  test('user and project given by id work as well as by name', async () => {
    const byName = new KeystoneSession(settings());
    const token = await byName.getToken();
    const res = await request(`${byName.settings.authUrl}/auth/tokens`, { headers: { 'x-auth-token': token, 'x-subject-token': token } });
    const doc = (await res.body.json()) as { token: { user: { id: string }; project: { id: string } } };
    await byName.close();
    const byId = new KeystoneSession(
      settings({ OS_USERNAME: '', OS_USER_ID: doc.token.user.id, OS_PROJECT_NAME: '', OS_PROJECT_ID: doc.token.project.id }),
    );
    try {
      assert.match(await byId.imageEndpoint(), /^http:\/\/127\.0\.0\.1/);
    } finally {
      await byId.close();
    }
  });

  test('a wrong password is KEYSTONE_AUTH_FAILED', async () => {
    const session = new KeystoneSession(settings({ OS_PASSWORD: 'definitely-wrong' }));
    await assert.rejects(session.getToken(), isOpenStackError('KEYSTONE_AUTH_FAILED', /refused user "admin".*OS_PASSWORD/));
    await session.close();
  });

  test('an unknown project is KEYSTONE_SCOPE_FAILED naming the projects the user can use', async () => {
    const session = new KeystoneSession(settings({ OS_PROJECT_NAME: 'no-such-project' }));
    await assert.rejects(session.getToken(), isOpenStackError('KEYSTONE_SCOPE_FAILED', /"no-such-project".*admin/));
    await session.close();
  });

  test('an unknown region is KEYSTONE_UNKNOWN_REGION naming the real one', async () => {
    const session = new KeystoneSession(settings({ OS_REGION_NAME: 'Atlantis' }));
    await assert.rejects(session.imageEndpoint(), isOpenStackError('KEYSTONE_UNKNOWN_REGION', new RegExp(`Atlantis.*${os.env.OS_REGION_NAME}`)));
    await session.close();
  });

  test('a /v2.0 auth URL on this v3-only Keystone is KEYSTONE_NOT_FOUND', async () => {
    const v2 = (os.env.OS_AUTH_URL ?? '').replace(/\/v3$/, '/v2.0');
    const session = new KeystoneSession(settings({ OS_AUTH_URL: v2, OS_TENANT_NAME: 'admin' }));
    await assert.rejects(session.getToken(), isOpenStackError('KEYSTONE_NOT_FOUND', /OS_AUTH_URL/));
    await session.close();
  });

  test('an application credential (id + secret) authenticates without user or project', async () => {
    const admin = new KeystoneSession(settings());
    const token = await admin.getToken();
    const authUrl = admin.settings.authUrl;
    await admin.close();
    const me = await request(`${authUrl}/auth/tokens`, { headers: { 'x-auth-token': token, 'x-subject-token': token } });
    const userId = ((await me.body.json()) as { token: { user: { id: string } } }).token.user.id;
    const created = await request(`${authUrl}/users/${userId}/application_credentials`, {
      method: 'POST',
      headers: { 'x-auth-token': token, 'content-type': 'application/json' },
      body: JSON.stringify({ application_credential: { name: `cis-test-${randomUUID()}` } }),
    });
    assert.equal(created.statusCode, 201);
    const cred = ((await created.body.json()) as { application_credential: { id: string; secret: string } }).application_credential;
    try {
      const env = { OS_AUTH_URL: authUrl, OS_AUTH_TYPE: 'v3applicationcredential', OS_APPLICATION_CREDENTIAL_ID: cred.id, OS_APPLICATION_CREDENTIAL_SECRET: cred.secret, OS_REGION_NAME: os.env.OS_REGION_NAME ?? '' };
      const session = new KeystoneSession(resolveAuthSettings({ env, files: new Map(), cwd: '/', homeDir: '/nonexistent' }));
      try {
        assert.match(await session.imageEndpoint(), /^http:\/\/127\.0\.0\.1/);
      } finally {
        await session.close();
      }
      const wrong = new KeystoneSession(resolveAuthSettings({ env: { ...env, OS_APPLICATION_CREDENTIAL_SECRET: 'nope' }, files: new Map(), cwd: '/', homeDir: '/nonexistent' }));
      await assert.rejects(wrong.getToken(), isOpenStackError('KEYSTONE_AUTH_FAILED', /application credential/));
      await wrong.close();
    } finally {
      const del = await request(`${authUrl}/users/${userId}/application_credentials/${cred.id}`, { method: 'DELETE', headers: { 'x-auth-token': token } });
      await del.body.dump();
    }
  });

  test('an existing token (OS_TOKEN) is validated and used as it is', async () => {
    const password = new KeystoneSession(settings());
    const token = await password.getToken();
    await password.close();
    const env = { OS_AUTH_URL: os.env.OS_AUTH_URL ?? '', OS_AUTH_TYPE: 'v3token', OS_TOKEN: token };
    const session = new KeystoneSession(resolveAuthSettings({ env, files: new Map(), cwd: '/', homeDir: '/nonexistent' }));
    try {
      assert.equal(await session.getToken(), token);
      assert.match(await session.imageEndpoint(), /^http:\/\/127\.0\.0\.1/);
    } finally {
      await session.close();
    }
  });
});
