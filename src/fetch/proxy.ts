/**
 * Which proxy a request goes through, decided as curl and the openstack CLI (python-requests) decide it:
 *
 * - `http://` URLs: `http_proxy`, else `HTTP_PROXY`; `https://` URLs: `https_proxy`, else `HTTPS_PROXY`;
 *   either, when unset: `all_proxy` / `ALL_PROXY`. An https URL never falls back to `http_proxy`.
 * - `no_proxy` / `NO_PROXY`: comma- (or space-) separated; `*` alone matches every host; an entry matches
 *   the host itself and every name under it (a leading `.` or `*.` is optional); `host:port` matches that
 *   port only; an IP address or CIDR block (`10.0.0.0/8`, `fd00::/8`) matches literal addresses in it.
 *   Names are compared as written in the URL, never resolved.
 * - config `http.proxy` / `http.noProxy` replace the environment (`proxy: ""` means direct, whatever the
 *   environment says); a target's own `proxy` / `noProxy` replace those for its cloud.
 *
 * Pure: the dispatcher that acts on it is built in http-client.ts (undici's ProxyAgent does the proxying).
 */
import { BlockList, isIP } from 'node:net';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { redactUrl } from '../redact-url.js';

/** A proxy URL (http:// or https://, `host:port` means http://), or "" for none. */
export const proxyUrl = z.string().refine((v) => v === '' || /^(https?:\/\/)?[^\s/]+(:\d+)?\/?$/i.test(v), 'an http:// or https:// proxy URL like http://proxy.example.com:3128, or "" for none');
/** curl's NO_PROXY: a list, or one comma-separated string. */
export const noProxyList = z.union([z.string(), z.array(z.string().min(1))]);

export interface ProxyConfig {
  /** Proxy for http and https URLs; "" for none. Undefined: the environment decides. */
  proxy?: string;
  /** Hosts reached directly; undefined: the environment decides. */
  noProxy?: string | readonly string[];
}

export interface ProxySettings {
  httpProxy?: string;
  httpsProxy?: string;
  noProxy: readonly string[];
  /** Where they came from: shown in the log. */
  origin: 'config' | 'environment' | 'none';
}

export const DIRECT: ProxySettings = { noProxy: [], origin: 'none' };

/** The settings for `config` (global http, then a target's override) over `env`. */
export function resolveProxySettings(env: NodeJS.ProcessEnv, ...configs: Array<ProxyConfig | undefined>): ProxySettings {
  let httpProxy = nonEmpty(env.http_proxy) ?? nonEmpty(env.HTTP_PROXY) ?? nonEmpty(env.all_proxy) ?? nonEmpty(env.ALL_PROXY);
  let httpsProxy = nonEmpty(env.https_proxy) ?? nonEmpty(env.HTTPS_PROXY) ?? nonEmpty(env.all_proxy) ?? nonEmpty(env.ALL_PROXY);
  let noProxy = splitNoProxy(env.no_proxy ?? env.NO_PROXY ?? '');
  let origin: ProxySettings['origin'] = httpProxy || httpsProxy ? 'environment' : 'none';
  for (const config of configs) {
    if (config?.proxy !== undefined) {
      httpProxy = nonEmpty(config.proxy);
      httpsProxy = httpProxy;
      origin = httpProxy ? 'config' : 'none';
    }
    if (config?.noProxy !== undefined) noProxy = typeof config.noProxy === 'string' ? splitNoProxy(config.noProxy) : [...config.noProxy];
  }
  for (const [name, url] of [['http proxy', httpProxy], ['https proxy', httpsProxy]] as const) {
    if (url !== undefined) checkProxyUrl(name, url);
  }
  httpProxy = httpProxy && normalizeProxyUrl(httpProxy);
  httpsProxy = httpsProxy && normalizeProxyUrl(httpsProxy);
  return { ...(httpProxy ? { httpProxy } : {}), ...(httpsProxy ? { httpsProxy } : {}), noProxy, origin };
}

/** The proxy URL for `url`, or undefined to go direct. */
export function proxyFor(url: string | URL, settings: ProxySettings): string | undefined {
  const target = typeof url === 'string' ? new URL(url) : url;
  const proxy = target.protocol === 'https:' ? settings.httpsProxy : target.protocol === 'http:' ? settings.httpProxy : undefined;
  if (!proxy || bypassesProxy(target, settings.noProxy)) return undefined;
  return proxy;
}

/** One line for the log: the proxies with credentials masked, and the exceptions. */
export function describeProxySettings(settings: ProxySettings): { httpProxy?: string; httpsProxy?: string; noProxy: string[]; origin: string } {
  return {
    ...(settings.httpProxy ? { httpProxy: redactUrl(settings.httpProxy) } : {}),
    ...(settings.httpsProxy ? { httpsProxy: redactUrl(settings.httpsProxy) } : {}),
    noProxy: [...settings.noProxy],
    origin: settings.origin,
  };
}

function bypassesProxy(url: URL, noProxy: readonly string[]): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase().replace(/\.$/, '');
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
  for (const raw of noProxy) {
    const entry = raw.trim().toLowerCase();
    if (entry === '*') return true;
    if (!entry) continue;
    const { name, entryPort } = splitHostPort(entry);
    if (entryPort !== undefined && entryPort !== port) continue;
    if (isIP(host)) {
      if (addressMatches(host, name)) return true;
      continue;
    }
    const domain = name.replace(/^\*?\./, '').replace(/\.$/, '');
    if (domain && (host === domain || host.endsWith(`.${domain}`))) return true;
  }
  return false;
}

/** `host`, `host:port`, `[v6]:port`, `v6`, `a.b.c.d/nn`. */
function splitHostPort(entry: string): { name: string; entryPort?: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracketed) return { name: bracketed[1]!, ...(bracketed[2] ? { entryPort: Number(bracketed[2]) } : {}) };
  const withPort = /^([^:]+):(\d+)$/.exec(entry);
  if (withPort) return { name: withPort[1]!, entryPort: Number(withPort[2]) };
  return { name: entry };
}

function addressMatches(address: string, entry: string): boolean {
  const [base = '', bits] = entry.split('/');
  const family = isIP(base);
  if (family === 0) return false;
  const type = family === 6 ? 'ipv6' : 'ipv4';
  if (isIP(address) !== family) return false;
  if (bits === undefined) return base === address;
  const prefix = Number(bits);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 6 ? 128 : 32)) return false;
  const block = new BlockList();
  block.addSubnet(base, prefix, type);
  return block.check(address, type);
}

function splitNoProxy(value: string): string[] {
  return value.split(/[,\s]+/).map((e) => e.trim()).filter(Boolean);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value && value.trim() ? value.trim() : undefined;
}

function checkProxyUrl(name: string, value: string): void {
  let url: URL;
  try {
    url = new URL(value.includes('://') ? value : `http://${value}`);
  } catch {
    throw new ConfigError(`${name} "${redactUrl(value)}" is not a URL`, 'set it like http://proxy.example.com:3128 (config http.proxy or HTTPS_PROXY/HTTP_PROXY)');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`${name} "${redactUrl(value)}" uses ${url.protocol.replace(':', '')}; only http:// and https:// proxies are supported`,
      'point http.proxy (or HTTPS_PROXY/HTTP_PROXY) at an HTTP proxy');
  }
}

/** curl accepts `proxy.example.com:3128` without a scheme, meaning http://. */
export function normalizeProxyUrl(value: string): string {
  return value.includes('://') ? value : `http://${value}`;
}
