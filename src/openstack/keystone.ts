import type { Dispatcher } from 'undici';
import { request } from '../fetch/undici.js';
import { z } from 'zod';
import { silentLogger, type Logger } from '../log.js';
import type { AuthMethod, AuthSettings, EndpointInterface } from './auth-config.js';
import { OpenStackError, cleanErrorMessage, transportError } from './errors.js';
import { headerValue } from '../fetch/http-client.js';
import type { ProxySettings } from '../fetch/proxy.js';
import { USER_AGENT, createOpenStackAgent, readJson } from './http.js';

/** One endpoint of one service in the token's catalog, in a shape common to identity v3 and v2.0. */
export interface CatalogEndpoint {
  serviceType: string;
  interface: EndpointInterface;
  region?: string;
  url: string;
}

export interface KeystoneSessionOptions {
  log?: Logger;
  /** Shared Agent; by default the session makes one from the settings' CA options and owns it. */
  dispatcher?: Dispatcher;
  /** Proxy of this cloud, for the Agent the session makes (not used with `dispatcher`). */
  proxy?: ProxySettings;
  /** Renew this long before expiry (capped at a quarter of the token's lifetime). Default 60 s. */
  renewMarginMs?: number;
  /** Timeout for each Keystone request, headers and body. Default 30 s. */
  requestTimeoutMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

interface CachedToken {
  token: string;
  /** Local clock; computed from the server's issued_at/expires_at so clock skew does not matter. */
  expiresAtMs: number;
  renewAtMs: number;
  catalog: CatalogEndpoint[];
}

const v3EndpointSchema = z.looseObject({
  interface: z.string(),
  region_id: z.string().nullish(),
  region: z.string().nullish(),
  url: z.string(),
});
const v3TokenSchema = z.looseObject({
  token: z.looseObject({
    expires_at: z.string(),
    issued_at: z.string().optional(),
    catalog: z.array(z.looseObject({ type: z.string(), endpoints: z.array(v3EndpointSchema) })).optional(),
  }),
});
const v3ProjectsSchema = z.looseObject({ projects: z.array(z.looseObject({ name: z.string(), id: z.string() })) });
const v2TokenSchema = z.looseObject({
  access: z.looseObject({
    token: z.looseObject({ id: z.string(), expires: z.string(), issued_at: z.string().optional() }),
    serviceCatalog: z
      .array(
        z.looseObject({
          type: z.string(),
          endpoints: z.array(
            z.looseObject({
              region: z.string().nullish(),
              publicURL: z.string().optional(),
              internalURL: z.string().optional(),
              adminURL: z.string().optional(),
            }),
          ),
        }),
      )
      .optional(),
  }),
});

/**
 * An authenticated identity: fetches a token when first needed, renews it before it expires, and
 * finds Glance in the token's catalog. One per cloud, shared by every Glance call to it.
 */
export class KeystoneSession {
  readonly settings: AuthSettings;
  readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly log: Logger;
  private readonly renewMarginMs: number;
  private readonly requestTimeoutMs: number;
  private readonly now: () => number;
  private cached: CachedToken | undefined;
  private pending: Promise<CachedToken> | undefined;
  private warnedV2 = false;

  constructor(settings: AuthSettings, options: KeystoneSessionOptions = {}) {
    this.settings = settings;
    this.log = options.log ?? silentLogger();
    this.renewMarginMs = options.renewMarginMs ?? 60_000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.now = options.now ?? Date.now;
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher =
      options.dispatcher ?? createOpenStackAgent({ cacertPath: settings.cacertPath, insecure: settings.insecure, proxy: options.proxy });
  }

  /** A valid token, from cache unless it is within the renewal margin of expiry (or invalidated). */
  async getToken(signal?: AbortSignal): Promise<string> {
    return (await this.current(signal)).token;
  }

  /** The Glance root URL (no `/v2`): the endpoint override, or the catalog's `image` endpoint. */
  async imageEndpoint(signal?: AbortSignal): Promise<string> {
    if (this.settings.imageEndpointOverride) return this.settings.imageEndpointOverride;
    return findImageEndpoint((await this.current(signal)).catalog, this.settings);
  }

  /**
   * Forget the cached token, e.g. after a 401 from Glance. Pass the token that was refused so a token
   * renewed meanwhile by a concurrent call is kept.
   */
  invalidate(token?: string): void {
    if (token === undefined || this.cached?.token === token) this.cached = undefined;
  }

  /**
   * GET on Keystone with the session's token (as `X-Subject-Token` too with `subjectToken`: a token may always
   * validate itself), through `call`. A 401 gets one fresh token and one more try; any other status is the
   * caller's to judge, and the caller reads (or dumps) the body.
   */
  async authorizedGet(url: string, options: { subjectToken?: boolean; signal?: AbortSignal } = {}): Promise<Dispatcher.ResponseData> {
    for (let attempt = 1; ; attempt++) {
      const token = await this.getToken(options.signal);
      const res = await this.call('GET', url, { token, subjectToken: options.subjectToken ? token : undefined, signal: options.signal });
      if (res.statusCode !== 401 || attempt > 1) return res;
      await res.body.dump();
      this.invalidate(token);
    }
  }

  /** Close the Agent if this session created it. */
  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  private async current(signal?: AbortSignal): Promise<CachedToken> {
    const cached = this.cached;
    if (cached && this.now() < cached.renewAtMs) return cached;
    // One authentication at a time; concurrent callers share it.
    this.pending ??= this.authenticate(signal).finally(() => {
      this.pending = undefined;
    });
    const fresh = await this.pending;
    this.cached = fresh;
    return fresh;
  }

  private async authenticate(signal?: AbortSignal): Promise<CachedToken> {
    const startedAt = performance.now();
    const { settings } = this;
    const result = settings.identityVersion === 'v2.0' ? await this.authenticateV2(signal) : await this.authenticateV3(signal);
    this.log.debug(
      {
        event: 'keystone.auth.done',
        authUrl: settings.authUrl,
        method: settings.method.type,
        identityVersion: settings.identityVersion,
        expiresAt: new Date(result.expiresAtMs).toISOString(),
        durationMs: Math.round(performance.now() - startedAt),
      },
      `authenticated to ${settings.authUrl}`,
    );
    return result;
  }

  private lifetime(issuedAt: string | undefined, expiresAt: string): { expiresAtMs: number; renewAtMs: number } {
    const now = this.now();
    const expires = Date.parse(expiresAt.endsWith('Z') || /[+-]\d\d:?\d\d$/.test(expiresAt) ? expiresAt : `${expiresAt}Z`);
    const issued = issuedAt ? Date.parse(issuedAt.endsWith('Z') ? issuedAt : `${issuedAt}Z`) : Number.NaN;
    const lifetimeMs = Number.isFinite(issued) && Number.isFinite(expires) ? expires - issued : Number.isFinite(expires) ? expires - now : 3_600_000;
    const expiresAtMs = now + Math.max(0, lifetimeMs);
    const margin = Math.min(this.renewMarginMs, lifetimeMs / 4);
    return { expiresAtMs, renewAtMs: expiresAtMs - margin };
  }

  /**
   * The one way to Keystone, like GlanceClient.call: our agent, headers and timeouts, and a transport failure
   * as an error with a code and a cure. The caller reads (or dumps) the body and judges the status.
   */
  private async call(
    method: 'GET' | 'POST', url: string, options: { json?: unknown; token?: string; subjectToken?: string; signal?: AbortSignal } = {},
  ): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': USER_AGENT };
    if (options.json !== undefined) headers['content-type'] = 'application/json';
    if (options.token) headers['x-auth-token'] = options.token;
    if (options.subjectToken) headers['x-subject-token'] = options.subjectToken;
    try {
      return await request(url, {
        method,
        dispatcher: this.dispatcher,
        headers,
        body: options.json === undefined ? undefined : JSON.stringify(options.json),
        headersTimeout: this.requestTimeoutMs,
        bodyTimeout: this.requestTimeoutMs,
        signal: options.signal,
      });
    } catch (err) {
      throw transportError('keystone', method, url, err);
    }
  }

  private post(url: string, body: unknown, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    return this.call('POST', url, { json: body, signal });
  }

  private async authenticateV3(signal?: AbortSignal): Promise<CachedToken> {
    const { settings } = this;
    const { method } = settings;
    if (method.type === 'token' && settings.scope === undefined) return this.validateExistingToken(method.token, signal);
    const url = `${settings.authUrl}/auth/tokens`;
    const res = await this.post(url, { auth: { identity: v3Identity(method), ...v3Scope(settings) } }, signal);
    if (res.statusCode === 201 || res.statusCode === 200) {
      const token = headerValue(res.headers['x-subject-token']);
      const doc = await readJson(res.body, v3TokenSchema, { service: 'keystone', method: 'POST', url });
      if (!token) throw keystoneHttpError('POST', url, res.statusCode, 'no X-Subject-Token header in the answer');
      return { token, ...this.lifetime(doc.token.issued_at, doc.token.expires_at), catalog: v3Catalog(doc.token.catalog) };
    }
    const message = cleanErrorMessage(await res.body.text());
    if (res.statusCode === 401 && settings.scope !== undefined) await this.explainScopeFailure(signal);
    if (res.statusCode === 401) throw authFailed(settings, message);
    throw keystoneHttpError('POST', url, res.statusCode, message);
  }

  /** A bare token (no project given): ask Keystone about it, which also returns its catalog. */
  private async validateExistingToken(token: string, signal?: AbortSignal): Promise<CachedToken> {
    const url = `${this.settings.authUrl}/auth/tokens`;
    const res = await this.call('GET', url, { token, subjectToken: token, signal });
    if (res.statusCode !== 200) {
      const message = cleanErrorMessage(await res.body.text());
      if (res.statusCode === 401 || res.statusCode === 404) throw authFailed(this.settings, message);
      throw keystoneHttpError('GET', url, res.statusCode, message);
    }
    const doc = await readJson(res.body, v3TokenSchema, { service: 'keystone', method: 'GET', url });
    return { token, ...this.lifetime(doc.token.issued_at, doc.token.expires_at), catalog: v3Catalog(doc.token.catalog) };
  }

  /**
   * Keystone answers 401 alike for a wrong password and for a project that does not exist or where the
   * user has no role. Authenticating once more without a scope tells the two apart; throws only if it does.
   */
  private async explainScopeFailure(signal?: AbortSignal): Promise<void> {
    const { settings } = this;
    const url = `${settings.authUrl}/auth/tokens`;
    const res = await this.post(url, { auth: { identity: v3Identity(settings.method) } }, signal);
    await res.body.dump();
    const unscoped = headerValue(res.headers['x-subject-token']);
    if (res.statusCode !== 201 || !unscoped) return;
    let projects: string[] = [];
    try {
      const list = await this.call('GET', `${settings.authUrl}/auth/projects`, { token: unscoped, signal });
      if (list.statusCode === 200) {
        const doc = await readJson(list.body, v3ProjectsSchema, { service: 'keystone', method: 'GET', url });
        projects = doc.projects.map((p) => p.name);
      } else {
        await list.body.dump();
      }
    } catch {
      // the project list only decorates the message
    }
    const scope = settings.scope ?? {};
    const wanted = scope.projectId
      ? `project id ${scope.projectId}`
      : `project "${scope.projectName}" in domain ${scope.projectDomainName ?? scope.projectDomainId ?? 'default'}`;
    throw new OpenStackError(
      'KEYSTONE_SCOPE_FAILED',
      `the credentials are valid but cannot be scoped to ${wanted}: it does not exist or the user has no role on it` +
        ` (projects this user can use: ${projects.join(', ') || 'none'})`,
      'fix OS_PROJECT_NAME/OS_PROJECT_ID and OS_PROJECT_DOMAIN_NAME, or grant the user a role on that project',
      { service: 'keystone', method: 'POST', url, status: 401 },
    );
  }

  private async authenticateV2(signal?: AbortSignal): Promise<CachedToken> {
    const { settings } = this;
    if (!this.warnedV2) {
      this.warnedV2 = true;
      this.log.warn(
        { event: 'keystone.v2.deprecated', authUrl: settings.authUrl },
        'identity v2.0 was removed from Keystone in Queens (2018); move this cloud to an identity v3 auth URL',
      );
    }
    const { method, scope } = settings;
    if (method.type !== 'password') {
      throw new OpenStackError(
        'KEYSTONE_V2_UNSUPPORTED_METHOD',
        `identity v2.0 supports only password auth, not ${method.type}`,
        'use an identity v3 auth URL (ending in /v3)',
        { service: 'keystone' },
      );
    }
    const url = `${settings.authUrl}/tokens`;
    const body = {
      auth: {
        passwordCredentials: { ...(method.userId ? { userId: method.userId } : { username: method.username }), password: method.password },
        ...(scope?.projectId ? { tenantId: scope.projectId } : scope?.projectName ? { tenantName: scope.projectName } : {}),
      },
    };
    const res = await this.post(url, body, signal);
    if (res.statusCode !== 200) {
      const message = cleanErrorMessage(await res.body.text());
      if (res.statusCode === 401) throw authFailed(settings, message);
      throw keystoneHttpError('POST', url, res.statusCode, message);
    }
    const doc = await readJson(res.body, v2TokenSchema, { service: 'keystone', method: 'POST', url });
    const catalog: CatalogEndpoint[] = [];
    for (const service of doc.access.serviceCatalog ?? []) {
      for (const ep of service.endpoints) {
        for (const [iface, epUrl] of [['public', ep.publicURL], ['internal', ep.internalURL], ['admin', ep.adminURL]] as const) {
          if (epUrl) catalog.push({ serviceType: service.type, interface: iface, url: epUrl, ...(ep.region ? { region: ep.region } : {}) });
        }
      }
    }
    const { token } = doc.access;
    return { token: token.id, ...this.lifetime(token.issued_at, token.expires), catalog };
  }
}

function v3Identity(method: AuthMethod): Record<string, unknown> {
  const user = (m: { userId?: string; username?: string; userDomainId?: string; userDomainName?: string }) =>
    m.userId
      ? { id: m.userId }
      : { name: m.username, domain: m.userDomainId ? { id: m.userDomainId } : { name: m.userDomainName } };
  switch (method.type) {
    case 'password':
      return { methods: ['password'], password: { user: { ...user(method), password: method.password } } };
    case 'applicationCredential':
      return {
        methods: ['application_credential'],
        application_credential: method.id
          ? { id: method.id, secret: method.secret }
          : { name: method.name, secret: method.secret, user: user(method) },
      };
    case 'token':
      return { methods: ['token'], token: { id: method.token } };
  }
}

function v3Scope(settings: AuthSettings): { scope?: Record<string, unknown> } {
  const s = settings.scope;
  if (s === undefined) return {};
  if (s.projectId) return { scope: { project: { id: s.projectId } } };
  return {
    scope: {
      project: { name: s.projectName, domain: s.projectDomainId ? { id: s.projectDomainId } : { name: s.projectDomainName } },
    },
  };
}

function v3Catalog(catalog: z.infer<typeof v3TokenSchema>['token']['catalog']): CatalogEndpoint[] {
  const out: CatalogEndpoint[] = [];
  for (const service of catalog ?? []) {
    for (const ep of service.endpoints) {
      const iface = ep.interface.replace(/URL$/, '');
      if (iface !== 'public' && iface !== 'internal' && iface !== 'admin') continue;
      const region = ep.region_id ?? ep.region ?? undefined;
      out.push({ serviceType: service.type, interface: iface, url: ep.url, ...(region ? { region } : {}) });
    }
  }
  return out;
}

/** Pick Glance from a catalog by region and interface; pure, with errors that name what exists. */
export function findImageEndpoint(catalog: readonly CatalogEndpoint[], settings: Pick<AuthSettings, 'regionName' | 'interface' | 'authUrl'>): string {
  const image = catalog.filter((e) => e.serviceType === 'image');
  const url = `${settings.authUrl}/auth/tokens`;
  if (image.length === 0) {
    const types = [...new Set(catalog.map((e) => e.serviceType))];
    throw new OpenStackError(
      'KEYSTONE_NO_IMAGE_ENDPOINT',
      `the catalog has no image (Glance) service (it lists: ${types.join(', ') || 'nothing'})`,
      'ask the cloud admin to register Glance, or set the target `endpoint` (OS_IMAGE_ENDPOINT_OVERRIDE) to its URL',
      { service: 'keystone', url },
    );
  }
  const regions = [...new Set(image.map((e) => e.region ?? '(none)'))];
  const inRegion = settings.regionName ? image.filter((e) => e.region === settings.regionName) : image;
  if (inRegion.length === 0) {
    throw new OpenStackError(
      'KEYSTONE_UNKNOWN_REGION',
      `region "${settings.regionName}" has no image endpoint (regions with one: ${regions.join(', ')})`,
      'set OS_REGION_NAME (or the target `region`) to one of those regions',
      { service: 'keystone', url },
    );
  }
  const match = inRegion.find((e) => e.interface === settings.interface);
  if (match === undefined) {
    const ifaces = [...new Set(inRegion.map((e) => e.interface))];
    throw new OpenStackError(
      'KEYSTONE_NO_IMAGE_ENDPOINT',
      `the image service has no ${settings.interface} endpoint${settings.regionName ? ` in region ${settings.regionName}` : ''} (it has: ${ifaces.join(', ')})`,
      'set OS_INTERFACE (or the target `interface`) to one of those',
      { service: 'keystone', url },
    );
  }
  return glanceRoot(match.url);
}

/** Catalogs list Glance as `http://h:9292`, `.../` or `.../v2`; the client wants the root. */
export function glanceRoot(endpointUrl: string): string {
  return endpointUrl.replace(/\/+$/, '').replace(/\/v2(\.\d+)?$/, '');
}

function authFailed(settings: AuthSettings, detail: string): OpenStackError {
  const m = settings.method;
  const who =
    m.type === 'token'
      ? 'the given token (OS_TOKEN)'
      : m.type === 'applicationCredential'
        ? `application credential ${m.id ?? `"${m.name}"`}`
        : `user ${m.userId ?? `"${m.username}"`}${m.userDomainName ? ` in domain ${m.userDomainName}` : m.userDomainId ? ` in domain id ${m.userDomainId}` : ''}`;
  return new OpenStackError(
    'KEYSTONE_AUTH_FAILED',
    `Keystone at ${settings.authUrl} refused ${who} (401: ${detail})`,
    m.type === 'token'
      ? 'get a fresh token (it is expired or revoked) or use a password/application credential'
      : m.type === 'applicationCredential'
        ? 'check OS_APPLICATION_CREDENTIAL_ID/SECRET; the credential may be expired or deleted'
        : settings.identityVersion === 'v2.0'
          ? 'check OS_USERNAME, OS_PASSWORD and OS_PROJECT_NAME (tenant)'
          : 'check OS_USERNAME, OS_PASSWORD and OS_USER_DOMAIN_NAME (the user may also be disabled or locked out)',
    { service: 'keystone', method: 'POST', url: settings.authUrl, status: 401 },
  );
}

function keystoneHttpError(method: string, url: string, status: number, detail: string): OpenStackError {
  const retryable = status >= 500 || status === 429;
  return new OpenStackError(
    status === 404 ? 'KEYSTONE_NOT_FOUND' : `KEYSTONE_HTTP_${status}`,
    `${method} ${url} answered ${status}${detail ? `: ${detail}` : ''}`,
    status === 404
      ? 'the auth URL does not serve that identity API: check OS_AUTH_URL and its version suffix (/v3)'
      : retryable
        ? 'Keystone is failing; retried next cycle (see its logs if it persists)'
        : status === 400
          ? 'the auth request was rejected as malformed: check the user/project domain settings'
          : 'see the message; check the auth settings',
    { service: 'keystone', method, url, status },
    { retryable },
  );
}
