import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { PACKAGE_DIR } from '../package-root.js';
import { OriginCredentials } from '../fetch/http-client.js';
import { redactUrl } from '../redact-url.js';
import { SOURCE_TYPE_NAMES } from '../source/registry.js';
import { resolveStreams, streamId, type StreamSelection } from '../source/streams.js';
import { renderImageName } from '../targets/glance/image-spec.js';
import { TARGET_TYPE_NAMES, type TargetConfig } from '../targets/registry.js';
import { configSchema, type Config } from './schema.js';

export const SYSTEM_CONFIG_PATH = '/etc/cloudimg-sync/config.yaml';

/** The Ubuntu cloud-image keyring shipped with the package (keys/ beside dist/ and src/). */
export const SHIPPED_KEYRING_PATH = PACKAGE_DIR
  ? path.join(PACKAGE_DIR, 'keys', 'ubuntu-cloudimage-keyring.asc')
  : fileURLToPath(new URL('../../keys/ubuntu-cloudimage-keyring.asc', import.meta.url));

export interface LoadedConfig extends Config {
  /**
   * `source.url` holds no credentials: a `user:pass@` given there is moved here, sent as Basic auth to that
   * origin only, and shown as `sourceUrlShown` (`https://user:***@host/`). URLs derived from source.url
   * (listings, images: logged, stored in state, manifests and Glance) therefore never carry them.
   */
  sourceCredentials?: OriginCredentials;
  /** source.url as given, password masked: what logs and `check` show. */
  sourceUrlShown: string;
  /** Where the config came from: a file path, or `built-in defaults`. */
  origin: string;
  /** The streams to mirror (`source.streams`, or the one-stream shorthand), releases resolved. */
  streams: StreamSelection[];
  /** Absolute keyring path (the shipped Ubuntu keyring unless configured). */
  keyringPath: string;
}

/** Which file to read: --config, else $CLOUDIMG_SYNC_CONFIG, else the system file when present, else none. */
export function chooseConfigPath(cliPath: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (cliPath) return cliPath;
  if (env.CLOUDIMG_SYNC_CONFIG) return env.CLOUDIMG_SYNC_CONFIG;
  return existsSync(SYSTEM_CONFIG_PATH) ? SYSTEM_CONFIG_PATH : undefined;
}

export function loadConfig(cliPath?: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const file = chooseConfigPath(cliPath, env);
  if (!file) return validateConfig({}, 'built-in defaults');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`, 'pass an existing file with --config FILE');
  }
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (err) {
    throw new ConfigError(`${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`, 'fix the YAML syntax at that line');
  }
  return validateConfig(raw, file, path.dirname(path.resolve(file)));
}

/** Validate raw config data; every error names the key, the bad value and what is allowed. */
export function validateConfig(raw: unknown, origin: string, _configDir?: string): LoadedConfig {
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(`${origin}: ${describeIssue(parsed.error.issues[0], raw)}`, 'correct that key (see config/config.example.yaml)');
  }
  const config = parsed.data;
  const streams = resolveStreams(config.source, origin);
  config.targets.forEach((target, i) => checkTargetStreams(target, i, streams, origin));
  const keyringPath = config.source.keyring ? path.resolve(config.source.keyring) : SHIPPED_KEYRING_PATH;
  if (config.source.verifySignature && !existsSync(keyringPath)) {
    throw new ConfigError(`${origin}: source.keyring: ${keyringPath} does not exist`, 'point source.keyring at an armored OpenPGP public key file');
  }
  // A source without a url (simplestreams derives its default) has no credentials to take out.
  const { url, credentials } = config.source.url === undefined ? { url: undefined, credentials: undefined } : OriginCredentials.split(config.source.url);
  // web-download makes Glance fetch the image URL itself: it would need the mirror's password, which never leaves.
  const fetchedByGlance = config.targets.findIndex((t) => t.type === 'glance' && (t as { method?: string }).method === 'web-download');
  if (credentials && fetchedByGlance >= 0) {
    throw new ConfigError(`${origin}: targets[${fetchedByGlance}].method: web-download cannot fetch from a source.url with a user and password`,
      'use method put or stream for a private mirror (cloudimg-sync downloads, verifies and uploads)');
  }
  return {
    ...config, source: url === undefined ? config.source : { ...config.source, url }, origin, streams, keyringPath,
    sourceUrlShown: config.source.url === undefined ? '(the source type\'s default)' : redactUrl(config.source.url), ...(credentials ? { sourceCredentials: credentials } : {}),
  };
}

/** The streams a target carries: its `streams`, else every configured one. */
export function targetStreams(target: Pick<TargetConfig, 'streams'>, streams: readonly StreamSelection[]): StreamSelection[] {
  return target.streams ? streams.filter((s) => target.streams!.includes(s.id)) : [...streams];
}

/**
 * A target may only name configured streams; a Glance target's image names must tell its streams apart
 * (two streams rendering one name would make images indistinguishable in a Glance listing).
 */
function checkTargetStreams(target: TargetConfig, index: number, streams: readonly StreamSelection[], origin: string): void {
  const ids = streams.map((s) => s.id);
  for (const [j, id] of (target.streams ?? []).entries()) {
    if (!ids.includes(id)) {
      throw new ConfigError(`${origin}: targets[${index}].streams[${j}]: ${JSON.stringify(id)} is not a configured stream; configured: ${ids.join(', ')}`,
        'name a stream of source.streams as channel/variant, or add that stream to source.streams');
    }
  }
  if (target.type !== 'glance' && target.eol === 'hide') {
    throw new ConfigError(`${origin}: targets[${index}].eol: a ${target.type} target cannot hide images`, `use eol: delete (or keep) on a ${target.type} target`);
  }
  if (target.type !== 'glance') return;
  const carried = targetStreams(target, streams);
  for (const key of ['nameTemplate', 'stableName'] as const) {
    const template = target[key];
    if (template === undefined) continue;
    const byName = new Map<string, string>();
    for (const s of carried) {
      const name = renderImageName(template, { version: '24.04', release: 'noble', arch: 'amd64', serial: '20260101', channel: s.channel, variant: s.variant });
      const other = byName.get(name);
      if (other) {
        throw new ConfigError(`${origin}: targets[${index}].${key}: streams ${other} and ${s.id} would get the same image names (${JSON.stringify(template)})`,
          'add {flavor} (or {channel} and {variant}) to the template, or give the target `streams:` so it carries one of them');
      }
      byName.set(name, streamId(s));
    }
  }
}

/**
 * Keys whose values are never shown: passwords, secrets, tokens, and everything under a target's `auth`.
 * A config error names the key; printing its value would put the secret in a terminal and, on SIGHUP, the log.
 */
const SECRET_KEY_RE = /(password|secret|token|credential)/i;

function isSecretPath(path: readonly PropertyKey[]): boolean {
  return path.some((k) => typeof k === 'string' && (k === 'auth' || SECRET_KEY_RE.test(k)));
}

/** A value fit for an error message: secrets hidden, objects and lists described, long strings cut, URL passwords masked. */
function showValue(value: unknown, path: readonly PropertyKey[]): string {
  if (value === undefined) return 'missing';
  if (isSecretPath(path)) return '(value hidden)';
  // A short list of plain values is shown; a list holding mappings is described, never dumped.
  if (Array.isArray(value) && !value.every((v) => v === null || typeof v !== 'object')) return `a list of ${value.length}`;
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) return 'a mapping';
  const text = JSON.stringify(Array.isArray(value) ? value.map((v) => (typeof v === 'string' ? redactUrl(v) : v)) : typeof value === 'string' ? redactUrl(value) : value) ?? String(value);
  if (text.length <= 80) return text;
  return Array.isArray(value) ? `a list of ${value.length}` : `${text.slice(0, 77)}..."`;
}

function describeIssue(issue: z.core.$ZodIssue | undefined, raw: unknown): string {
  if (!issue) return 'invalid configuration';
  const key = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '') || '(top level)';
  const value = valueAt(raw, issue.path);
  const shown = showValue(value, issue.path);
  switch (issue.code) {
    case 'invalid_value':
      return `${key}: ${shown} is not allowed; allowed: ${issue.values.map(String).join(', ')}`;
    case 'unrecognized_keys':
      return `${key === '(top level)' ? '' : `${key}: `}unknown key(s) ${issue.keys.join(', ')}`;
    case 'invalid_union':
      if (issue.path[0] === 'source' && issue.path.length <= 2) {
        const type = issue.path.length === 2 ? value : (value as { type?: unknown } | undefined)?.type;
        return `source.type: ${showValue(type, ['type'])} is not allowed; allowed: ${SOURCE_TYPE_NAMES.join(', ')}`;
      }
      if (issue.path.at(-1) === 'type' || (issue.path.at(-2) === 'targets' && value && typeof value === 'object')) {
        const type = issue.path.at(-1) === 'type' ? value : (value as { type?: unknown }).type;
        return `${key}: target type ${showValue(type, ['type'])} is not allowed; allowed: ${TARGET_TYPE_NAMES.join(', ')}`;
      }
      return `${key}: ${shown} does not match any allowed form (check "type" and its keys)`;
    default:
      return `${key}: ${shown}: ${issue.message}`;
  }
}

function valueAt(raw: unknown, keys: readonly PropertyKey[]): unknown {
  let cur: unknown = raw;
  for (const k of keys) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur;
}
