import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { SyncError } from '../../src/errors.js';
import {
  cloudConfigCandidates,
  loadAuthSettings,
  resolveAuthSettings,
  type AuthConfigInput,
  type AuthSettings,
} from '../../src/openstack/auth-config.js';

const HOME = '/home/op';
const CWD = '/srv/sync';
const USER_CLOUDS = '/home/op/.config/openstack/clouds.yaml';
const USER_SECURE = '/home/op/.config/openstack/secure.yaml';

const OPENRC = {
  OS_AUTH_URL: 'https://keystone.example:5000/v3',
  OS_USERNAME: 'sync',
  OS_PASSWORD: 'pw',
  OS_PROJECT_NAME: 'images',
  OS_USER_DOMAIN_NAME: 'Default',
  OS_PROJECT_DOMAIN_NAME: 'Default',
};

const CLOUDS_YAML = `
clouds:
  prod:
    auth:
      auth_url: https://prod.example:5000
      username: prod-user
      project_name: prod-images
      user_domain_name: Corp
      project_domain_id: corp-id
    region_name: North
    interface: internal
    cacert: /etc/ssl/prod-ca.pem
  lab:
    auth:
      auth-url: http://lab.example:5000/v3/
      application_credential_id: ac-1
      application_credential_secret: ac-secret
    regions: [Lab1, Lab2]
    verify: false
  legacy:
    auth:
      auth_url: http://old.example:5000/v2.0
      username: old
      password: old-pw
      tenant_name: old-tenant
`;
const SECURE_YAML = `
clouds:
  prod:
    auth:
      password: prod-secret
`;

function input(partial: Partial<AuthConfigInput>): AuthConfigInput {
  return { env: {}, files: new Map(), cwd: CWD, homeDir: HOME, ...partial };
}

const userFiles = new Map([
  [USER_CLOUDS, CLOUDS_YAML],
  [USER_SECURE, SECURE_YAML],
]);

interface Case {
  name: string;
  in: Partial<AuthConfigInput>;
  want: Partial<AuthSettings>;
}

const cases: Case[] = [
  {
    name: 'an openrc (OS_* with names) gives v3 password auth scoped by project name',
    in: { env: OPENRC },
    want: {
      authUrl: 'https://keystone.example:5000/v3',
      identityVersion: 'v3',
      method: { type: 'password', password: 'pw', username: 'sync', userDomainName: 'Default' },
      scope: { projectName: 'images', projectDomainName: 'Default' },
      interface: 'public',
      insecure: false,
      source: 'environment (OS_*)',
    },
  },
  {
    name: 'ids work in place of names (OS_USER_ID, OS_PROJECT_ID)',
    in: { env: { OS_AUTH_URL: 'http://k:5000/v3', OS_USER_ID: 'u1', OS_PASSWORD: 'pw', OS_PROJECT_ID: 'p1' } },
    want: { method: { type: 'password', password: 'pw', userId: 'u1' }, scope: { projectId: 'p1' } },
  },
  {
    name: 'domain ids are used as given',
    in: { env: { ...OPENRC, OS_USER_DOMAIN_NAME: '', OS_PROJECT_DOMAIN_NAME: '', OS_USER_DOMAIN_ID: 'd1', OS_PROJECT_DOMAIN_ID: 'd2' } },
    want: {
      method: { type: 'password', password: 'pw', username: 'sync', userDomainId: 'd1' },
      scope: { projectName: 'images', projectDomainId: 'd2' },
    },
  },
  {
    name: 'OS_DOMAIN_NAME fills both user and project domain when they are not given',
    in: { env: { ...OPENRC, OS_USER_DOMAIN_NAME: '', OS_PROJECT_DOMAIN_NAME: '', OS_DOMAIN_NAME: 'Corp' } },
    want: {
      method: { type: 'password', password: 'pw', username: 'sync', userDomainName: 'Corp' },
      scope: { projectName: 'images', projectDomainName: 'Corp' },
    },
  },
  {
    name: 'an unversioned auth URL gets /v3 and a trailing slash is dropped',
    in: { env: { ...OPENRC, OS_AUTH_URL: 'https://keystone.example:5000/' } },
    want: { authUrl: 'https://keystone.example:5000/v3', identityVersion: 'v3' },
  },
  {
    name: 'an auth URL ending in /v2.0 selects identity v2.0 with tenant name',
    in: { env: { OS_AUTH_URL: 'http://k:5000/v2.0/', OS_USERNAME: 'u', OS_PASSWORD: 'pw', OS_TENANT_NAME: 't' } },
    want: {
      authUrl: 'http://k:5000/v2.0',
      identityVersion: 'v2.0',
      method: { type: 'password', password: 'pw', username: 'u' },
      scope: { projectName: 't' },
    },
  },
  {
    name: 'OS_IDENTITY_API_VERSION=2 on an unversioned URL appends /v2.0',
    in: { env: { OS_AUTH_URL: 'http://k:5000', OS_IDENTITY_API_VERSION: '2', OS_USERNAME: 'u', OS_PASSWORD: 'pw', OS_PROJECT_NAME: 't' } },
    want: { authUrl: 'http://k:5000/v2.0', identityVersion: 'v2.0' },
  },
  {
    name: 'an application credential id + secret needs no user and no project',
    in: { env: { OS_AUTH_URL: 'http://k:5000/v3', OS_AUTH_TYPE: 'v3applicationcredential', OS_APPLICATION_CREDENTIAL_ID: 'ac', OS_APPLICATION_CREDENTIAL_SECRET: 's' } },
    want: { method: { type: 'applicationCredential', id: 'ac', secret: 's' }, scope: undefined },
  },
  {
    name: 'an application credential secret alone implies v3applicationcredential',
    in: { env: { OS_AUTH_URL: 'http://k:5000/v3', OS_APPLICATION_CREDENTIAL_ID: 'ac', OS_APPLICATION_CREDENTIAL_SECRET: 's', OS_PROJECT_NAME: 'ignored' } },
    want: { method: { type: 'applicationCredential', id: 'ac', secret: 's' }, scope: undefined },
  },
  {
    name: 'an application credential by name carries its user',
    in: {
      env: {
        OS_AUTH_URL: 'http://k:5000/v3', OS_APPLICATION_CREDENTIAL_NAME: 'sync', OS_APPLICATION_CREDENTIAL_SECRET: 's',
        OS_USERNAME: 'u', OS_USER_DOMAIN_NAME: 'Default',
      },
    },
    want: { method: { type: 'applicationCredential', name: 'sync', secret: 's', username: 'u', userDomainName: 'Default' } },
  },
  {
    name: 'OS_TOKEN without a password means v3token; a project rescopes it',
    in: { env: { OS_AUTH_URL: 'http://k:5000/v3', OS_TOKEN: 'gAAA', OS_PROJECT_ID: 'p1' } },
    want: { method: { type: 'token', token: 'gAAA' }, scope: { projectId: 'p1' } },
  },
  {
    name: 'OS_AUTH_TYPE=v3token with no project keeps the token as it is',
    in: { env: { OS_AUTH_URL: 'http://k:5000/v3', OS_AUTH_TYPE: 'v3token', OS_TOKEN: 'gAAA' } },
    want: { method: { type: 'token', token: 'gAAA' }, scope: undefined },
  },
  {
    name: 'region, interface (publicURL spelling), CA bundle, insecure and image endpoint come from OS_*',
    in: {
      env: {
        ...OPENRC, OS_REGION_NAME: 'RegionTwo', OS_INTERFACE: 'internalURL', OS_CACERT: '/ca.pem', OS_INSECURE: 'true',
        OS_IMAGE_ENDPOINT_OVERRIDE: 'https://glance.example:9292/',
      },
    },
    want: { regionName: 'RegionTwo', interface: 'internal', cacertPath: '/ca.pem', insecure: true, imageEndpointOverride: 'https://glance.example:9292' },
  },
  {
    name: 'OS_CLOUD reads clouds.yaml from ~/.config/openstack and merges the password from secure.yaml',
    in: { env: { OS_CLOUD: 'prod' }, files: userFiles },
    want: {
      authUrl: 'https://prod.example:5000/v3',
      method: { type: 'password', password: 'prod-secret', username: 'prod-user', userDomainName: 'Corp' },
      scope: { projectName: 'prod-images', projectDomainId: 'corp-id' },
      regionName: 'North',
      interface: 'internal',
      cacertPath: '/etc/ssl/prod-ca.pem',
      source: `clouds.yaml cloud "prod" (${USER_CLOUDS} + ${USER_SECURE})`,
    },
  },
  {
    name: 'with OS_CLOUD, OS_* variables still override clouds.yaml (as the openstack CLI does)',
    in: { env: { OS_CLOUD: 'prod', OS_REGION_NAME: 'South', OS_PASSWORD: 'from-env' }, files: userFiles },
    want: {
      regionName: 'South',
      method: { type: 'password', password: 'from-env', username: 'prod-user', userDomainName: 'Corp' },
      source: `clouds.yaml cloud "prod" (${USER_CLOUDS} + ${USER_SECURE}) + environment (OS_*)`,
    },
  },
  {
    name: 'dashed keys, the first of `regions` and verify: false are understood',
    in: { env: { OS_CLOUD: 'lab' }, files: userFiles },
    want: {
      authUrl: 'http://lab.example:5000/v3',
      method: { type: 'applicationCredential', id: 'ac-1', secret: 'ac-secret' },
      regionName: 'Lab1',
      insecure: true,
    },
  },
  {
    name: 'a clouds.yaml entry with tenant_name and a /v2.0 URL is a v2.0 password cloud',
    in: { env: { OS_CLOUD: 'legacy' }, files: userFiles },
    want: { identityVersion: 'v2.0', scope: { projectName: 'old-tenant' } },
  },
  {
    name: 'a cloud named by the target wins over OS_CLOUD and ignores the OS_* environment',
    in: { env: { ...OPENRC, OS_CLOUD: 'lab' }, files: userFiles, overrides: { cloud: 'prod' } },
    want: {
      authUrl: 'https://prod.example:5000/v3',
      method: { type: 'password', password: 'prod-secret', username: 'prod-user', userDomainName: 'Corp' },
      source: `clouds.yaml cloud "prod" (${USER_CLOUDS} + ${USER_SECURE})`,
    },
  },
  {
    name: 'target overrides (region, interface, endpoint, auth keys) win over everything',
    in: {
      env: { OS_CLOUD: 'prod', OS_REGION_NAME: 'South' },
      files: userFiles,
      overrides: { regionName: 'East', interface: 'admin', imageEndpoint: 'http://g:9292', auth: { 'project-name': 'other', password: 'o' } },
    },
    want: {
      regionName: 'East',
      interface: 'admin',
      imageEndpointOverride: 'http://g:9292',
      scope: { projectName: 'other', projectDomainId: 'corp-id' },
      method: { type: 'password', password: 'o', username: 'prod-user', userDomainName: 'Corp' },
    },
  },
  {
    name: 'clouds.yaml in the current directory wins over the one in ~/.config/openstack',
    in: { env: { OS_CLOUD: 'here' }, files: new Map([...userFiles, [`${CWD}/clouds.yaml`, 'clouds: {here: {auth: {auth_url: "http://here:5000/v3", token: t}}}']]) },
    want: { authUrl: 'http://here:5000/v3', method: { type: 'token', token: 't' } },
  },
  {
    name: 'OS_CLIENT_CONFIG_FILE is searched first',
    in: {
      env: { OS_CLOUD: 'x', OS_CLIENT_CONFIG_FILE: '/opt/my.yaml' },
      files: new Map([...userFiles, ['/opt/my.yaml', '{"clouds": {"x": {"auth": {"auth_url": "http://x:5000/v3", "token": "t"}}}}']]),
    },
    want: { authUrl: 'http://x:5000/v3' },
  },
];

describe('resolveAuthSettings', () => {
  for (const c of cases) {
    test(c.name, () => {
      const got = resolveAuthSettings(input(c.in));
      for (const [key, value] of Object.entries(c.want)) {
        assert.deepEqual(got[key as keyof AuthSettings], value, `field ${key}`);
      }
    });
  }

  const failures: { name: string; in: Partial<AuthConfigInput>; code: string; mentions: RegExp }[] = [
    { name: 'no auth URL at all', in: { env: {} }, code: 'CONFIG_INVALID', mentions: /OS_AUTH_URL/ },
    { name: 'a user name without a user domain', in: { env: { ...OPENRC, OS_USER_DOMAIN_NAME: '' } }, code: 'CONFIG_INVALID', mentions: /OS_USER_DOMAIN_NAME/ },
    { name: 'password auth without a project (no catalog)', in: { env: { ...OPENRC, OS_PROJECT_NAME: '' } }, code: 'CONFIG_INVALID', mentions: /OS_PROJECT_NAME/ },
    { name: 'no password', in: { env: { ...OPENRC, OS_PASSWORD: '' } }, code: 'CONFIG_INVALID', mentions: /OS_PASSWORD/ },
    { name: 'an unsupported auth type', in: { env: { ...OPENRC, OS_AUTH_TYPE: 'v3oidcpassword' } }, code: 'CONFIG_INVALID', mentions: /not supported/ },
    { name: 'a /v2.0 URL with a v3 auth type', in: { env: { ...OPENRC, OS_AUTH_URL: 'http://k/v2.0', OS_AUTH_TYPE: 'v3password' } }, code: 'CONFIG_INVALID', mentions: /agree/ },
    { name: 'a bad interface', in: { env: { ...OPENRC, OS_INTERFACE: 'private' } }, code: 'CONFIG_INVALID', mentions: /OS_INTERFACE/ },
    { name: 'OS_CLOUD without any clouds.yaml', in: { env: { OS_CLOUD: 'prod' } }, code: 'CONFIG_INVALID', mentions: /no clouds\.yaml was found/ },
    { name: 'OS_CLOUD naming a cloud the file lacks', in: { env: { OS_CLOUD: 'nope' }, files: userFiles }, code: 'CONFIG_INVALID', mentions: /it has: prod, lab, legacy/ },
    { name: 'a clouds.yaml that is not YAML', in: { env: { OS_CLOUD: 'x' }, files: new Map([[USER_CLOUDS, 'clouds: [']]) }, code: 'CONFIG_INVALID', mentions: /not valid YAML/ },
  ];
  for (const f of failures) {
    test(`fails clearly on ${f.name}`, () => {
      assert.throws(
        () => resolveAuthSettings(input(f.in)),
        (err: unknown) => err instanceof SyncError && err.code === f.code && f.mentions.test(err.oneLine()),
      );
    });
  }

  test('never puts a secret into the source description or an error message', () => {
    const got = resolveAuthSettings(input({ env: { ...OPENRC, OS_PASSWORD: 'hunter2' } }));
    assert.doesNotMatch(got.source, /hunter2/);
    assert.throws(
      () => resolveAuthSettings(input({ env: { ...OPENRC, OS_PASSWORD: 'hunter2', OS_USER_DOMAIN_NAME: '' } })),
      (err: unknown) => err instanceof SyncError && !err.oneLine().includes('hunter2'),
    );
  });
});

describe('cloudConfigCandidates', () => {
  test('searches ./, ~/.config/openstack and /etc/openstack in openstacksdk order, OS_CLIENT_CONFIG_FILE first', () => {
    const { clouds, secure } = cloudConfigCandidates({ OS_CLIENT_CONFIG_FILE: 'rel/c.yaml' }, CWD, HOME);
    assert.equal(clouds[0], `${CWD}/rel/c.yaml`);
    assert.deepEqual(clouds.slice(1, 4), [`${CWD}/clouds.yaml`, `${CWD}/clouds.yml`, `${CWD}/clouds.json`]);
    assert.ok(clouds.indexOf(USER_CLOUDS) < clouds.indexOf('/etc/openstack/clouds.yaml'));
    assert.ok(secure.includes(USER_SECURE));
  });
});

describe('loadAuthSettings', () => {
  test('reads clouds.yaml and secure.yaml from disk', async () => {
    const home = await mkdtemp(path.join(tmpdir(), 'authcfg-'));
    try {
      const dir = path.join(home, '.config', 'openstack');
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'clouds.yaml'), CLOUDS_YAML);
      await writeFile(path.join(dir, 'secure.yaml'), SECURE_YAML);
      const got = await loadAuthSettings({ cloud: 'prod' }, { env: {}, cwd: home, homeDir: home });
      assert.equal(got.method.type === 'password' && got.method.password, 'prod-secret');
      assert.equal(got.regionName, 'North');
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
