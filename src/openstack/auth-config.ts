import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { redactUrl } from '../redact-url.js';

/**
 * Where to authenticate and how, resolved the way the `openstack` CLI does it:
 * target overrides > `OS_*` environment > the `OS_CLOUD` entry of clouds.yaml (+ secure.yaml).
 *
 * One deliberate difference: when a target names its cloud itself (`overrides.cloud`), the caller's
 * `OS_*` variables are not layered over it (openstacksdk's library behaviour), so a shell sourced for
 * another cloud cannot mix its password into this one.
 */

export type IdentityVersion = 'v3' | 'v2.0';
export type EndpointInterface = 'public' | 'internal' | 'admin';

export interface UserRef {
  userId?: string;
  username?: string;
  userDomainId?: string;
  userDomainName?: string;
}

export type AuthMethod =
  | ({ type: 'password'; password: string } & UserRef)
  | ({ type: 'applicationCredential'; id?: string; name?: string; secret: string } & UserRef)
  | { type: 'token'; token: string };

export interface ProjectScope {
  projectId?: string;
  projectName?: string;
  projectDomainId?: string;
  projectDomainName?: string;
}

export interface AuthSettings {
  /** Versioned identity URL without a trailing slash, e.g. `https://keystone:5000/v3`. */
  authUrl: string;
  identityVersion: IdentityVersion;
  method: AuthMethod;
  /** Project to scope to; undefined for application credentials (scoped by themselves) and bare tokens. */
  scope?: ProjectScope;
  regionName?: string;
  interface: EndpointInterface;
  /** PEM bundle to trust for TLS (OS_CACERT / cacert). */
  cacertPath?: string;
  /** TLS verification off (OS_INSECURE=true / verify: false). */
  insecure: boolean;
  /** Glance URL to use instead of the catalog's. */
  imageEndpointOverride?: string;
  /** Where the settings came from, for messages (never holds secrets). */
  source: string;
}

export interface AuthOverrides {
  /** clouds.yaml entry to use; wins over OS_CLOUD and stops the OS_* environment from applying. */
  cloud?: string;
  regionName?: string;
  interface?: string;
  imageEndpoint?: string;
  /** clouds.yaml-style keys: auth_url, username, password, project_name, application_credential_secret, ... */
  auth?: Readonly<Record<string, string>>;
}

export interface AuthConfigInput {
  env: Readonly<Record<string, string | undefined>>;
  /** Contents of the candidate clouds.yaml/secure.yaml files that exist, by absolute path. */
  files: ReadonlyMap<string, string>;
  overrides?: AuthOverrides;
  cwd: string;
  homeDir: string;
}

const RAW_KEYS = [
  'auth_url', 'auth_type', 'identity_api_version',
  'username', 'user_id', 'password', 'token',
  'user_domain_name', 'user_domain_id', 'project_domain_name', 'project_domain_id',
  'domain_name', 'domain_id', 'default_domain_id', 'default_domain_name',
  'project_name', 'project_id',
  'application_credential_id', 'application_credential_name', 'application_credential_secret',
  'region_name', 'interface', 'cacert', 'insecure', 'image_endpoint_override',
] as const;
type RawKey = (typeof RAW_KEYS)[number];
type RawSettings = Partial<Record<RawKey, string>>;

/** Older or alternative spellings, as keystoneauth and openstacksdk accept them. */
const KEY_ALIASES: Readonly<Record<string, RawKey>> = {
  tenant_name: 'project_name',
  tenant_id: 'project_id',
  endpoint_type: 'interface',
  default_domain: 'default_domain_id',
  os_auth_url: 'auth_url',
};

function rawKey(key: string): RawKey | undefined {
  const k = key.trim().toLowerCase().replaceAll('-', '_');
  if ((RAW_KEYS as readonly string[]).includes(k)) return k as RawKey;
  return KEY_ALIASES[k];
}

/** Adds `source` into `target`; canonical keys win over aliases within the same layer. */
function mergeLayer(target: RawSettings, source: Readonly<Record<string, unknown>>): void {
  const layer: RawSettings = {};
  for (const [key, value] of Object.entries(source)) {
    const k = rawKey(key);
    if (k === undefined || value === undefined || value === null || value === '') continue;
    const isAlias = rawKey(key) !== key.toLowerCase().replaceAll('-', '_');
    if (isAlias && layer[k] !== undefined) continue;
    layer[k] = String(value);
  }
  Object.assign(target, layer);
}

function envLayer(env: AuthConfigInput['env']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('OS_') || value === undefined || value === '') continue;
    const key = name.slice(3).toLowerCase();
    if (key === 'cloud') continue;
    out[key] = value;
  }
  return out;
}

/** clouds.yaml and secure.yaml locations, in openstacksdk's search order; the first that exists wins. */
export function cloudConfigCandidates(
  env: AuthConfigInput['env'],
  cwd: string,
  homeDir: string,
): { clouds: string[]; secure: string[] } {
  const dirs = [
    cwd,
    path.join(env.XDG_CONFIG_HOME || path.join(homeDir, '.config'), 'openstack'),
    path.join(homeDir, '.config', 'openstack'),
    '/etc/xdg/openstack',
    '/etc/openstack',
  ];
  const unique = [...new Set(dirs)];
  const names = (base: string) => unique.flatMap((d) => ['.yaml', '.yml', '.json'].map((ext) => path.join(d, base + ext)));
  const clouds = names('clouds');
  const secure = names('secure');
  if (env.OS_CLIENT_CONFIG_FILE) clouds.unshift(path.resolve(cwd, env.OS_CLIENT_CONFIG_FILE));
  if (env.OS_CLIENT_SECURE_FILE) secure.unshift(path.resolve(cwd, env.OS_CLIENT_SECURE_FILE));
  return { clouds, secure };
}

const scalar = z.union([z.string(), z.number(), z.boolean()]);
const cloudEntrySchema = z.looseObject({
  auth: z.record(z.string(), scalar.nullable()).optional(),
  regions: z.array(z.union([z.string(), z.looseObject({ name: z.string() })])).optional(),
  verify: z.union([z.boolean(), z.string()]).optional(),
});
const cloudsFileSchema = z.looseObject({ clouds: z.record(z.string(), cloudEntrySchema.nullable()).optional() });
type CloudEntry = z.infer<typeof cloudEntrySchema>;

function parseCloudsFile(filePath: string, text: string): Record<string, CloudEntry> {
  let doc: unknown;
  try {
    // JSON is YAML, so one parser reads clouds.json too.
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${filePath} is not valid YAML: ${(err as Error).message.split('\n')[0]}`, `fix the syntax of ${filePath}`);
  }
  const parsed = cloudsFileSchema.safeParse(doc ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(
      `${filePath} does not look like a clouds.yaml: ${issue?.path.join('.') || '(top)'}: ${issue?.message ?? 'invalid'}`,
      'it must have a top-level `clouds:` mapping of cloud names to settings',
    );
  }
  const clouds: Record<string, CloudEntry> = {};
  for (const [name, entry] of Object.entries(parsed.data.clouds ?? {})) clouds[name] = entry ?? {};
  return clouds;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isRecord(b) && isRecord(v) ? deepMerge(b, v) : v;
  }
  return out;
}

/** The flat settings of one clouds.yaml entry: `auth:` keys and top-level keys side by side. */
function cloudLayer(entry: CloudEntry): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(entry)) {
    if (k === 'auth' || k === 'regions' || k === 'verify') continue;
    if (!isRecord(v) && !Array.isArray(v)) out[k] = v;
  }
  Object.assign(out, entry.auth ?? {});
  const firstRegion = entry.regions?.[0];
  if (out.region_name === undefined && firstRegion !== undefined) {
    out.region_name = typeof firstRegion === 'string' ? firstRegion : firstRegion.name;
  }
  if (entry.verify !== undefined && out.insecure === undefined) {
    out.insecure = String(!parseBool(String(entry.verify), 'verify'));
  }
  return out;
}

function loadCloud(input: AuthConfigInput, cloudName: string, chosenBy: string): { layer: Record<string, unknown>; source: string } {
  const { clouds: cloudPaths, secure: securePaths } = cloudConfigCandidates(input.env, input.cwd, input.homeDir);
  const cloudsPath = cloudPaths.find((p) => input.files.has(p));
  if (cloudsPath === undefined) {
    throw new ConfigError(
      `${chosenBy} names cloud "${cloudName}" but no clouds.yaml was found (looked in ${cloudPaths.slice(0, 4).join(', ')}, ...)`,
      'create ~/.config/openstack/clouds.yaml (or set OS_CLIENT_CONFIG_FILE to its path)',
    );
  }
  const clouds = parseCloudsFile(cloudsPath, input.files.get(cloudsPath) ?? '');
  const entry = clouds[cloudName];
  if (entry === undefined) {
    const known = Object.keys(clouds);
    throw new ConfigError(
      `${chosenBy} names cloud "${cloudName}", which ${cloudsPath} does not define (it has: ${known.join(', ') || 'none'})`,
      `use one of the clouds in ${cloudsPath} or add "${cloudName}" to it`,
    );
  }
  let merged: Record<string, unknown> = entry;
  let source = `clouds.yaml cloud "${cloudName}" (${cloudsPath}`;
  const securePath = securePaths.find((p) => input.files.has(p));
  if (securePath !== undefined) {
    const secureEntry = parseCloudsFile(securePath, input.files.get(securePath) ?? '')[cloudName];
    if (secureEntry !== undefined) {
      merged = deepMerge(merged, secureEntry);
      source += ` + ${securePath}`;
    }
  }
  return { layer: cloudLayer(cloudEntrySchema.parse(merged)), source: `${source})` };
}

function parseBool(value: string, name: string): boolean {
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(`${name} must be true or false, not "${value}"`, `set ${name} to true or false`);
}

/** Resolve auth settings from environment, clouds.yaml contents and target overrides. Pure. */
export function resolveAuthSettings(input: AuthConfigInput): AuthSettings {
  const overrides = input.overrides ?? {};
  const raw: RawSettings = {};
  const sources: string[] = [];

  const cloudName = overrides.cloud ?? (input.env.OS_CLOUD || undefined);
  if (cloudName !== undefined) {
    const chosenBy = overrides.cloud !== undefined ? 'the target config' : 'OS_CLOUD';
    const cloud = loadCloud(input, cloudName, chosenBy);
    mergeLayer(raw, cloud.layer);
    sources.push(cloud.source);
  }
  if (overrides.cloud === undefined) {
    const env = envLayer(input.env);
    const before = JSON.stringify(raw);
    mergeLayer(raw, env);
    if (JSON.stringify(raw) !== before || sources.length === 0) sources.push('environment (OS_*)');
  }
  const overrideLayer: Record<string, unknown> = {
    ...(overrides.auth ?? {}),
    region_name: overrides.regionName,
    interface: overrides.interface,
    image_endpoint_override: overrides.imageEndpoint,
  };
  const beforeOverrides = JSON.stringify(raw);
  mergeLayer(raw, overrideLayer);
  if (JSON.stringify(raw) !== beforeOverrides) sources.push('target overrides');

  return normalize(raw, sources.join(' + '));
}

const SUPPORTED_AUTH_TYPES = ['password', 'v3password', 'v2password', 'v3applicationcredential', 'token', 'v3token'] as const;

function normalize(raw: RawSettings, source: string): AuthSettings {
  const where = `(settings from ${source})`;
  if (!raw.auth_url) {
    throw new ConfigError(`no Keystone auth URL ${where}`, 'set OS_AUTH_URL, or OS_CLOUD to a cloud in clouds.yaml, or auth.auth_url on the target');
  }
  const authType = inferAuthType(raw);
  if (!(SUPPORTED_AUTH_TYPES as readonly string[]).includes(authType)) {
    throw new ConfigError(
      `auth type "${authType}" is not supported ${where}`,
      `use one of ${SUPPORTED_AUTH_TYPES.join(', ')} (OS_AUTH_TYPE / auth_type)`,
    );
  }
  const { authUrl, identityVersion } = versionedAuthUrl(raw, authType, where);
  const method = authMethod(raw, authType, identityVersion, where);
  const scope = method.type === 'applicationCredential' ? undefined : projectScope(raw, identityVersion);
  if (scope === undefined && method.type === 'password') {
    throw new ConfigError(
      `no project to scope the token to ${where}; an unscoped token has no catalog, so Glance cannot be found`,
      'set OS_PROJECT_NAME (with OS_PROJECT_DOMAIN_NAME) or OS_PROJECT_ID',
    );
  }
  return {
    authUrl,
    identityVersion,
    method,
    ...(scope ? { scope } : {}),
    ...(raw.region_name ? { regionName: raw.region_name } : {}),
    interface: normalizeInterface(raw.interface ?? 'public'),
    ...(raw.cacert ? { cacertPath: raw.cacert } : {}),
    insecure: raw.insecure ? parseBool(raw.insecure, 'OS_INSECURE / verify') : false,
    ...(raw.image_endpoint_override ? { imageEndpointOverride: raw.image_endpoint_override.replace(/\/+$/, '') } : {}),
    source,
  };
}

function inferAuthType(raw: RawSettings): string {
  if (raw.auth_type) return raw.auth_type.toLowerCase().replaceAll('-', '').replaceAll('_', '');
  if (raw.application_credential_secret) return 'v3applicationcredential';
  if (raw.token && !raw.password) return 'token';
  return 'password';
}

function versionedAuthUrl(raw: RawSettings, authType: string, where: string): { authUrl: string; identityVersion: IdentityVersion } {
  let url: URL;
  try {
    url = new URL(raw.auth_url ?? '');
  } catch {
    throw new ConfigError(`auth URL "${redactUrl(raw.auth_url ?? '')}" is not a URL ${where}`, 'set OS_AUTH_URL to e.g. https://keystone.example.com:5000/v3');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`auth URL "${redactUrl(raw.auth_url ?? '')}" must be http or https ${where}`, 'set OS_AUTH_URL to e.g. https://keystone.example.com:5000/v3');
  }
  const base = `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
  const fromUrl: IdentityVersion | undefined = /\/v2\.0$/.test(base) ? 'v2.0' : /\/v3$/.test(base) ? 'v3' : undefined;
  const fromType: IdentityVersion | undefined = authType === 'v2password' ? 'v2.0' : authType.startsWith('v3') ? 'v3' : undefined;
  const api = raw.identity_api_version?.trim();
  const fromApi: IdentityVersion | undefined = api === undefined ? undefined : api.startsWith('2') ? 'v2.0' : 'v3';
  if (fromUrl && fromType && fromUrl !== fromType) {
    throw new ConfigError(
      `auth URL ${base} is identity ${fromUrl} but auth type ${authType} is ${fromType} ${where}`,
      'make OS_AUTH_URL and OS_AUTH_TYPE agree (a /v3 URL with password, or /v2.0 with v2password)',
    );
  }
  const identityVersion = fromUrl ?? fromType ?? fromApi ?? 'v3';
  return { authUrl: fromUrl ? base : `${base}/${identityVersion}`, identityVersion };
}

function userRef(raw: RawSettings, identityVersion: IdentityVersion, where: string): UserRef {
  if (raw.user_id) return { userId: raw.user_id };
  if (!raw.username) {
    throw new ConfigError(`no user ${where}`, 'set OS_USERNAME (or OS_USER_ID)');
  }
  if (identityVersion === 'v2.0') return { username: raw.username };
  const domainId = raw.user_domain_id ?? (raw.user_domain_name ? undefined : raw.domain_id ?? (raw.domain_name ? undefined : raw.default_domain_id));
  const domainName = raw.user_domain_name ?? (domainId ? undefined : raw.domain_name ?? raw.default_domain_name);
  if (!domainId && !domainName) {
    throw new ConfigError(
      `user "${raw.username}" is given by name but without a domain ${where}`,
      'set OS_USER_DOMAIN_NAME (usually Default) or OS_USER_DOMAIN_ID',
    );
  }
  return { username: raw.username, ...(domainId ? { userDomainId: domainId } : { userDomainName: domainName }) };
}

function authMethod(raw: RawSettings, authType: string, identityVersion: IdentityVersion, where: string): AuthMethod {
  if (authType === 'token' || authType === 'v3token') {
    if (!raw.token) throw new ConfigError(`auth type ${authType} needs a token ${where}`, 'set OS_TOKEN');
    if (identityVersion === 'v2.0') {
      throw new ConfigError(`token auth against identity v2.0 is not supported ${where}`, 'use a /v3 auth URL');
    }
    return { type: 'token', token: raw.token };
  }
  if (authType === 'v3applicationcredential') {
    if (!raw.application_credential_secret) {
      throw new ConfigError(`application credential without a secret ${where}`, 'set OS_APPLICATION_CREDENTIAL_SECRET');
    }
    if (raw.application_credential_id) {
      return { type: 'applicationCredential', id: raw.application_credential_id, secret: raw.application_credential_secret };
    }
    if (!raw.application_credential_name) {
      throw new ConfigError(
        `application credential without an id or a name ${where}`,
        'set OS_APPLICATION_CREDENTIAL_ID (or OS_APPLICATION_CREDENTIAL_NAME with OS_USERNAME and OS_USER_DOMAIN_NAME)',
      );
    }
    return {
      type: 'applicationCredential',
      name: raw.application_credential_name,
      secret: raw.application_credential_secret,
      ...userRef(raw, identityVersion, where),
    };
  }
  if (!raw.password) throw new ConfigError(`no password ${where}`, 'set OS_PASSWORD (or use an application credential)');
  return { type: 'password', password: raw.password, ...userRef(raw, identityVersion, where) };
}

function projectScope(raw: RawSettings, identityVersion: IdentityVersion): ProjectScope | undefined {
  if (raw.project_id) return { projectId: raw.project_id };
  if (!raw.project_name) return undefined;
  if (identityVersion === 'v2.0') return { projectName: raw.project_name };
  const domainId = raw.project_domain_id ?? (raw.project_domain_name ? undefined : raw.domain_id ?? (raw.domain_name ? undefined : raw.default_domain_id));
  const domainName = raw.project_domain_name ?? (domainId ? undefined : raw.domain_name ?? raw.default_domain_name);
  // Keystone's own default when a project is named without a domain.
  return {
    projectName: raw.project_name,
    ...(domainId ? { projectDomainId: domainId } : domainName ? { projectDomainName: domainName } : { projectDomainId: 'default' }),
  };
}

function normalizeInterface(value: string): EndpointInterface {
  const v = value.toLowerCase().replace(/url$/, '');
  if (v === 'public' || v === 'internal' || v === 'admin') return v;
  throw new ConfigError(`interface "${value}" is not one of public, internal, admin`, 'set OS_INTERFACE to public, internal or admin');
}

/** The impure shell: read whichever candidate config files exist, then resolve. */
export async function loadAuthSettings(
  overrides: AuthOverrides = {},
  where: { env?: NodeJS.ProcessEnv; cwd?: string; homeDir?: string } = {},
): Promise<AuthSettings> {
  const env = where.env ?? process.env;
  const cwd = where.cwd ?? process.cwd();
  const homeDir = where.homeDir ?? homedir();
  const files = new Map<string, string>();
  if (overrides.cloud !== undefined || env.OS_CLOUD) {
    const { clouds, secure } = cloudConfigCandidates(env, cwd, homeDir);
    for (const list of [clouds, secure]) {
      for (const p of list) {
        const text = await readFile(p, 'utf8').catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
          throw new ConfigError(`cannot read ${p}: ${err.message}`, `fix the permissions of ${p}`);
        });
        if (text !== undefined) {
          files.set(p, text);
          break;
        }
      }
    }
  }
  return resolveAuthSettings({ env, files, overrides, cwd, homeDir });
}
