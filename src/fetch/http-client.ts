/**
 * The HTTP plumbing every fetch shares: one undici Agent with our timeouts and User-Agent, redirect
 * following, and retry with capped exponential backoff. Whether an error is worth retrying is decided
 * by `isRetryable()` in src/errors.ts, not here.
 *
 * The client carries the policy every request through it obeys (`policyOf(client)`): Basic credentials sent
 * to their own origin only (never to a redirect elsewhere), no https -> http redirect unless allowed, a
 * low-speed limit on bodies (curl's --speed-limit/--speed-time) and a deadline for small documents.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { Dispatcher } from 'undici';
import { Agent, Pool, ProxyAgent, request } from './undici.js';
import { resolveProxySettings, proxyFor, type ProxyConfig, type ProxySettings } from './proxy.js';
import { ConfigError, SyncError, describeError, errorCode, isRetryable } from '../errors.js';
import type { Logger } from '../log.js';
import { VERSION } from '../package-root.js';

export const USER_AGENT = `cloudimg-sync/${VERSION} (+https://github.com/cloudimg-sync/cloudimg-sync)`;

/**
 * The one HTTP policy: every default of timeouts and retries, used by the config schema (`http.*`), the
 * client, the retry loop and the OpenStack agents alike.
 */
export const HTTP_DEFAULTS = {
  /** TCP + TLS handshake. */
  connectTimeoutMs: 15_000,
  /** From request sent to the last response header received. */
  headersTimeoutMs: 30_000,
  /** Longest silence between two body chunks (an idle timeout, not a total one). */
  idleTimeoutMs: 60_000,
  /** Retries after the first attempt of network errors, 5xx and truncated bodies. */
  retries: 4,
  /** Full-jitter exponential backoff from this ... */
  retryBaseDelayMs: 1_000,
  /** ... up to this. */
  retryMaxDelayMs: 60_000,
  /** Sockets per origin. */
  connections: 8,
  /** Follow an https URL's redirect to plain http (false: refused with HTTP_INSECURE_REDIRECT). */
  allowInsecureRedirects: false,
  /** Like curl's --speed-limit/--speed-time: a body slower than this over lowSpeedTimeMs is abandoned (0: off). */
  lowSpeedBytesPerSec: 1024,
  lowSpeedTimeMs: 60_000,
  /** The whole of one request for a small document (listing, SHA256SUMS, signature), headers to last byte. */
  metadataTimeoutMs: 120_000,
} as const;

/** `config.http` as the client reads it; every key optional (HTTP_DEFAULTS fill in). */
export interface HttpClientOptions extends ProxyConfig {
  connectTimeoutMs?: number;
  headersTimeoutMs?: number;
  idleTimeoutMs?: number;
  connections?: number;
  userAgent?: string;
  /** PEM file of CAs trusted besides the system's (a mirror or proxy with a private CA). */
  caFile?: string;
  /** Where HTTPS_PROXY, HTTP_PROXY, NO_PROXY (and lower-case) are read; default this process's environment. */
  env?: NodeJS.ProcessEnv;
  allowInsecureRedirects?: boolean;
  lowSpeedBytesPerSec?: number;
  lowSpeedTimeMs?: number;
  metadataTimeoutMs?: number;
  /** Extra trusted CA certificates (PEM) for https origins, e.g. a private mirror's own CA. */
  ca?: string | Buffer;
  /** Basic auth for one origin (a private mirror's `user:pass@` in source.url). */
  credentials?: OriginCredentials;
}

/** What requests made through a client must obey beyond the Agent's own timeouts. */
export interface HttpPolicy {
  allowInsecureRedirects: boolean;
  lowSpeedBytesPerSec: number;
  lowSpeedTimeMs: number;
  metadataTimeoutMs: number;
}

const policies = new WeakMap<Dispatcher, HttpPolicy>();

/** The policy a client was created with (the defaults for a client made elsewhere). */
export function policyOf(client: Dispatcher | undefined): HttpPolicy {
  const own = client && policies.get(client);
  if (own) return own;
  const d = HTTP_DEFAULTS;
  return { allowInsecureRedirects: d.allowInsecureRedirects, lowSpeedBytesPerSec: d.lowSpeedBytesPerSec, lowSpeedTimeMs: d.lowSpeedTimeMs, metadataTimeoutMs: d.metadataTimeoutMs };
}

/** The client options of a configuration: `http.*`, and the source's Basic credentials. */
export function httpClientOptionsFor(config: { http: HttpClientOptions; sourceCredentials?: OriginCredentials }): HttpClientOptions {
  return { ...config.http, credentials: config.sourceCredentials };
}

/**
 * Basic credentials taken out of a URL, bound to its origin. They never print: JSON and inspection show
 * `[redacted]`, so a config object logged whole cannot leak them.
 */
export class OriginCredentials {
  readonly #authorization: string;

  constructor(readonly origin: string, username: string, password: string) {
    this.#authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  }

  /** The credentials of `url`'s userinfo and the URL without them; undefined credentials when it has none. */
  static split(url: string): { url: string; credentials?: OriginCredentials } {
    const parsed = new URL(url);
    if (!parsed.username && !parsed.password) return { url };
    const credentials = new OriginCredentials(parsed.origin, decodeURIComponent(parsed.username), decodeURIComponent(parsed.password));
    parsed.username = '';
    parsed.password = '';
    return { url: parsed.href, credentials };
  }

  /** The Authorization header for a request to `origin`, or undefined for any other origin. */
  authorizationFor(origin: string): string | undefined {
    return origin === this.origin ? this.#authorization : undefined;
  }

  toJSON(): string {
    return '[redacted]';
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `OriginCredentials(${this.origin}, [redacted])`;
  }
}

/** One header's value, the first when it was sent more than once. */
export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

type HeaderPairs = Iterable<[string, string | string[] | undefined]>;

/** Adds a User-Agent to requests that do not set one, whatever shape their headers come in. */
function withUserAgent(headers: Dispatcher.DispatchOptions['headers'], userAgent: string): Dispatcher.DispatchOptions['headers'] {
  if (headers == null) return { 'user-agent': userAgent };
  if (Array.isArray(headers)) {
    const flat = headers as string[];
    for (let i = 0; i < flat.length; i += 2) if (flat[i]?.toLowerCase() === 'user-agent') return headers;
    return [...flat, 'user-agent', userAgent];
  }
  const entries: [string, string | string[] | undefined][] =
    Symbol.iterator in Object(headers) ? [...(headers as HeaderPairs)] : Object.entries(headers);
  if (entries.some(([name]) => name.toLowerCase() === 'user-agent')) return headers;
  return { ...Object.fromEntries(entries), 'user-agent': userAgent };
}

/** Adds `authorization` unless the request sets one. */
function withAuthorization(headers: Dispatcher.DispatchOptions['headers'], authorization: string): Dispatcher.DispatchOptions['headers'] {
  if (Array.isArray(headers)) {
    const flat = headers as string[];
    for (let i = 0; i < flat.length; i += 2) if (flat[i]?.toLowerCase() === 'authorization') return headers;
    return [...flat, 'authorization', authorization];
  }
  const entries: [string, string | string[] | undefined][] = headers == null ? []
    : Symbol.iterator in Object(headers) ? [...(headers as HeaderPairs)] : Object.entries(headers);
  if (entries.some(([name]) => name.toLowerCase() === 'authorization')) return headers;
  return { ...Object.fromEntries(entries), authorization };
}

function originOf(origin: Dispatcher.DispatchOptions['origin']): string {
  try {
    return new URL(String(origin)).origin;
  } catch {
    return '';
  }
}

/**
 * One Agent per process is the intent: create it at start-up, pass it to every fetch, close it on exit.
 * Every request made through it carries our User-Agent unless it sets its own, and the Basic credentials
 * of `credentials` when (and only when) it goes to their origin: each redirect hop is a request of its own.
 */
export function createHttpClient(options: HttpClientOptions = {}): Dispatcher {
  const o = { ...HTTP_DEFAULTS, userAgent: USER_AGENT, ...options };
  const proxy = resolveProxySettings(o.env ?? process.env, o);
  const extraCas = [...(options.ca ? [String(options.ca)] : []), ...(o.caFile ? [readCaFile(o.caFile, 'http.caFile')] : [])];
  const ca = extraCas.length > 0 ? [...tls.rootCertificates, ...extraCas] : undefined;
  const agent = createProxyingAgent(proxy, {
    connectTimeoutMs: o.connectTimeoutMs, headersTimeoutMs: o.headersTimeoutMs, bodyTimeoutMs: o.idleTimeoutMs, connections: o.connections, ca,
  });
  const credentials = options.credentials;
  const client = agent.compose((dispatch) => (opts, handler) => {
    let headers = withUserAgent(opts.headers, o.userAgent);
    const authorization = credentials?.authorizationFor(originOf(opts.origin));
    if (authorization) headers = withAuthorization(headers, authorization);
    return dispatch({ ...opts, headers }, handler);
  });
  policies.set(client, {
    allowInsecureRedirects: o.allowInsecureRedirects, lowSpeedBytesPerSec: o.lowSpeedBytesPerSec,
    lowSpeedTimeMs: o.lowSpeedTimeMs, metadataTimeoutMs: o.metadataTimeoutMs,
  });
  return client;
}

export interface AgentSettings {
  connectTimeoutMs: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  connections: number;
  /** Trusted CAs for TLS to origins and to an https proxy; default the system's. */
  ca?: Array<string | Buffer>;
  /** Skip certificate checks of origins (OS_INSECURE). */
  insecure?: boolean;
  keepAliveTimeoutMs?: number;
}

/**
 * An Agent that sends each origin direct or through undici's ProxyAgent, as `proxy` says for it (decided
 * once per origin, when its pool is made). An http:// origin goes through the proxy as a plain forward
 * request, an https:// one through a CONNECT tunnel, as curl does.
 */
export function createProxyingAgent(proxy: ProxySettings, settings: AgentSettings): Agent {
  const tls = { ...(settings.ca ? { ca: settings.ca } : {}), ...(settings.insecure ? { rejectUnauthorized: false } : {}) };
  const common = {
    headersTimeout: settings.headersTimeoutMs,
    bodyTimeout: settings.bodyTimeoutMs,
    connections: settings.connections,
    ...(settings.keepAliveTimeoutMs ? { keepAliveTimeout: settings.keepAliveTimeoutMs } : {}),
  };
  return new Agent({
    ...common,
    connect: { timeout: settings.connectTimeoutMs, ...tls },
    factory: (origin, opts) => {
      const via = proxyFor(String(origin), proxy);
      if (!via) return new Pool(origin, opts);
      return new ProxyAgent({
        ...common,
        uri: via,
        proxyTunnel: String(origin).startsWith('https:'),
        requestTls: { timeout: settings.connectTimeoutMs, ...tls },
        proxyTls: { timeout: settings.connectTimeoutMs, ...(settings.ca ? { ca: settings.ca } : {}) },
      });
    },
  });
}

function readCaFile(file: string, key: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError(`${key}: cannot read ${file}: ${(err as Error).message}`, `point ${key} at a readable PEM file`);
  }
}

let sharedClient: Dispatcher | undefined;

/** The process-wide client with default timeouts, for callers that were not handed one. */
export function sharedHttpClient(): Dispatcher {
  sharedClient ??= createHttpClient();
  return sharedClient;
}

/** Code and message of a raw error, without the cure describeError() appends (ours follows). */
function causeText(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = errorCode(err);
  return code ? `${code}: ${message}` : message;
}

/** A network failure that outlived its retries, as a SyncError with the underlying code. */
export class NetworkError extends SyncError {
  constructor(readonly url: string, attempts: number, cause: unknown) {
    super(
      errorCode(cause) ?? 'NETWORK_ERROR',
      `GET ${url} failed after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${causeText(cause)}`,
      'check network access to the mirror (proxy, DNS, firewall); partial downloads are kept and resume next cycle',
      { retryable: true, cause },
    );
  }
}

export class TooManyRedirectsError extends SyncError {
  constructor(readonly url: string, maxRedirects: number) {
    super(
      'HTTP_TOO_MANY_REDIRECTS',
      `GET ${url} was redirected more than ${maxRedirects} times`,
      'check source.url: the mirror is redirecting in a loop',
    );
  }
}

export class InsecureRedirectError extends SyncError {
  constructor(readonly url: string, readonly location: string) {
    super(
      'HTTP_INSECURE_REDIRECT',
      `GET ${url} redirected from https to plain http (${location}); refused`,
      'fix the mirror (or source.url) so it stays on https; set http.allowInsecureRedirects: true only if you accept unencrypted transfers',
    );
  }
}

export class TooSlowError extends SyncError {
  constructor(readonly url: string, bytesPerSec: number, windowMs: number) {
    super(
      'HTTP_TOO_SLOW',
      `GET ${url} sent less than ${bytesPerSec} bytes/s for ${windowMs / 1000} s; abandoned`,
      'the mirror or the network is stalling; it is retried (a download resumes); tune http.lowSpeedBytesPerSec / http.lowSpeedTimeMs if the link is this slow',
      { retryable: true },
    );
  }
}

/** Told of every chunk a consumer takes from a body; `stop()` once the body is done with. */
export interface SpeedWatch {
  received(bytes: number): void;
  stop(): void;
}

/**
 * Abandons `body` with TooSlowError when fewer than `bytesPerSec * timeMs` bytes are taken from it in a
 * `timeMs` window (checked every `timeMs`): a trickle never holds a cycle, though each chunk resets the idle
 * timeout. The consumer reports what it reads (a listener would switch the body to flowing mode).
 */
export function watchBodySpeed(body: Dispatcher.ResponseData['body'], url: string, policy: HttpPolicy): SpeedWatch {
  const { lowSpeedBytesPerSec: rate, lowSpeedTimeMs: windowMs } = policy;
  if (!(rate > 0 && windowMs > 0)) return { received: () => undefined, stop: () => undefined };
  let inWindow = 0;
  const timer = setInterval(() => {
    if (inWindow < (rate * windowMs) / 1000) {
      clearInterval(timer);
      body.destroy(new TooSlowError(url, rate, windowMs));
    }
    inWindow = 0;
  }, windowMs);
  timer.unref();
  return {
    received: (bytes) => { inWindow += bytes; },
    stop: () => clearInterval(timer),
  };
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export interface GetOptions {
  client?: Dispatcher;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  maxRedirects?: number;
}

/**
 * A GET that follows redirects (Apache answers 301 for a directory without its trailing slash).
 * The caller owns the returned body and must consume or dump it.
 */
export async function getFollowingRedirects(
  url: string,
  options: GetOptions = {},
): Promise<{ url: string; response: Dispatcher.ResponseData }> {
  const maxRedirects = options.maxRedirects ?? 5;
  let current = url;
  for (let hop = 0; ; hop++) {
    const response = await request(current, {
      method: 'GET',
      dispatcher: options.client ?? sharedHttpClient(),
      headers: options.headers,
      signal: options.signal,
    });
    const location = response.headers.location;
    if (!REDIRECT_STATUSES.has(response.statusCode) || typeof location !== 'string') {
      return { url: current, response };
    }
    await response.body.dump();
    if (hop >= maxRedirects) throw new TooManyRedirectsError(url, maxRedirects);
    const next = new URL(location, current);
    if (new URL(current).protocol === 'https:' && next.protocol !== 'https:' && !policyOf(options.client ?? sharedHttpClient()).allowInsecureRedirects) {
      throw new InsecureRedirectError(current, next.href);
    }
    current = next.toString();
  }
}

/** Hangs up on a body that will not be read: the socket is closed rather than drained. */
export function abandonBody(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => {}); // destroy() reports RequestAbortedError to listeners; there are none to tell
  body.destroy();
}

/** Full-jitter exponential backoff: uniform in [0, min(maxDelayMs, baseDelayMs * 2^(attempt-1))]. */
export function backoffDelayMs(attempt: number, baseDelayMs: number, maxDelayMs: number, random = Math.random): number {
  const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(random() * ceiling);
}

export interface RetryOptions {
  /** Retries after the first attempt; 0 means try once. */
  retries: number;
  baseDelayMs: number;
  maxDelayMs: number;
  signal?: AbortSignal;
  log?: Logger;
  /** For the `http.retry` event. */
  url?: string;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}


/** A caller's optional retry settings completed with the defaults, for `withRetries` on `url`. */
export function retryOptionsFor(
  url: string,
  options: { retries?: number; baseDelayMs?: number; maxDelayMs?: number; signal?: AbortSignal; log?: Logger },
): RetryOptions {
  return {
    retries: options.retries ?? HTTP_DEFAULTS.retries,
    baseDelayMs: options.baseDelayMs ?? HTTP_DEFAULTS.retryBaseDelayMs,
    maxDelayMs: options.maxDelayMs ?? HTTP_DEFAULTS.retryMaxDelayMs,
    signal: options.signal,
    log: options.log,
    url,
  };
}

/**
 * Runs `fn(attempt)` (attempt counts from 1) until it succeeds, fails with an error `isRetryable()` rejects,
 * or runs out of retries. The wait between attempts stops at once when `signal` aborts.
 * Network errors that exhaust their retries are thrown as NetworkError; SyncErrors are thrown unchanged.
 */
export async function withRetries<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason ?? err;
      if (!isRetryable(err)) throw err;
      if (attempt > options.retries) {
        throw err instanceof SyncError ? err : new NetworkError(options.url ?? '(unknown url)', attempt, err);
      }
      const delayMs = backoffDelayMs(attempt, options.baseDelayMs, options.maxDelayMs);
      options.log?.warn(
        { event: 'http.retry', url: options.url, attempt, delayMs, code: errorCode(err), err: describeError(err) },
        'retrying after a transient failure',
      );
      options.onRetry?.(err, attempt, delayMs);
      await sleep(delayMs, undefined, { signal: options.signal });
    }
  }
}
