import { readFileSync } from 'node:fs';
import type { Agent, Dispatcher } from 'undici';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { HTTP_DEFAULTS, USER_AGENT, createProxyingAgent } from '../fetch/http-client.js';
import { DIRECT, type ProxySettings } from '../fetch/proxy.js';
import { OpenStackError, type OpenStackService } from './errors.js';

export { USER_AGENT };

export interface OpenStackAgentOptions {
  /** PEM bundle to trust instead of the system roots (OS_CACERT). */
  cacertPath?: string;
  /** Skip certificate verification (OS_INSECURE); for labs only. */
  insecure?: boolean;
  connectTimeoutMs?: number;
  /** Sockets per origin. */
  connections?: number;
  /** Proxy of this cloud (HTTPS_PROXY/NO_PROXY, http.proxy, the target's proxy); default direct. */
  proxy?: ProxySettings;
}

/**
 * The Agent every Keystone and Glance request of one cloud goes through. A cloud gets its own because
 * its CA bundle is its own; keep-alive sockets are shared by all calls to it.
 */
export function createOpenStackAgent(options: OpenStackAgentOptions = {}): Agent {
  let ca: Buffer | undefined;
  if (options.cacertPath) {
    try {
      ca = readFileSync(options.cacertPath);
    } catch (err) {
      throw new ConfigError(
        `cannot read the CA bundle ${options.cacertPath}: ${(err as Error).message}`,
        'point OS_CACERT (clouds.yaml `cacert`) at a readable PEM file',
      );
    }
  }
  return createProxyingAgent(options.proxy ?? DIRECT, {
    connectTimeoutMs: options.connectTimeoutMs ?? HTTP_DEFAULTS.connectTimeoutMs,
    connections: options.connections ?? HTTP_DEFAULTS.connections,
    ...(ca ? { ca: [ca] } : {}),
    ...(options.insecure ? { insecure: true } : {}),
    keepAliveTimeoutMs: 4_000,
  });
}

/** Read a JSON body and check its shape once, at the edge. */
export async function readJson<S extends z.ZodType>(
  body: Dispatcher.ResponseData['body'],
  schema: S,
  what: { service: OpenStackService; method: string; url: string },
): Promise<z.infer<S>> {
  const text = await body.text();
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw badResponse(what, `not JSON: ${text.slice(0, 120)}`);
  }
  const parsed = schema.safeParse(doc);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw badResponse(what, `${issue?.path.join('.') || '(top)'}: ${issue?.message ?? 'unexpected shape'}`);
  }
  return parsed.data;
}

function badResponse(what: { service: OpenStackService; method: string; url: string }, detail: string): OpenStackError {
  return new OpenStackError(
    `${what.service.toUpperCase()}_BAD_RESPONSE`,
    `${what.method} ${what.url} answered with an unexpected body: ${detail}`,
    `check that the URL points at ${what.service === 'keystone' ? 'Keystone (identity v3)' : 'Glance (images v2)'}, not a proxy or another service`,
    { ...what },
    { retryable: true },
  );
}
