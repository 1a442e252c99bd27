import { SyncError, errorCode } from '../errors.js';

export type OpenStackService = 'keystone' | 'glance';

export interface OpenStackErrorDetails {
  service: OpenStackService;
  method?: string;
  /** Request URL without query secrets (OpenStack URLs never carry credentials). */
  url?: string;
  status?: number;
}

/** A failure talking to Keystone or Glance; `code` is stable (`KEYSTONE_AUTH_FAILED`, `IMAGE_TOO_LARGE`, ...). */
export class OpenStackError extends SyncError {
  readonly service: OpenStackService;
  readonly status: number | undefined;
  readonly method: string | undefined;
  readonly url: string | undefined;

  constructor(
    code: string,
    message: string,
    cure: string,
    details: OpenStackErrorDetails,
    options: { retryable?: boolean; cause?: unknown } = {},
  ) {
    super(code, message, cure, options);
    this.name = 'OpenStackError';
    this.service = details.service;
    this.status = details.status;
    this.method = details.method;
    this.url = details.url;
  }
}

/** Node/OpenSSL codes meaning "the TLS handshake failed", as opposed to "nobody answered". */
const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED', 'CERT_REJECTED', 'CERT_SIGNATURE_FAILURE', 'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER', 'EPROTO',
]);

const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
]);

/** Turn a transport failure (no HTTP answer) into an OpenStackError; aborts are passed through untouched. */
export function transportError(service: OpenStackService, method: string, url: string, err: unknown): unknown {
  if (err instanceof SyncError) return err;
  if (err instanceof Error && (err.name === 'AbortError' || errorCode(err) === 'ABORT_ERR')) return err;
  const code = errorCode(err) ?? 'UNKNOWN';
  const detail = err instanceof Error ? err.message : String(err);
  const upper = service.toUpperCase();
  const host = hostOf(url);
  if (TLS_CODES.has(code) || /certificate|ssl|tls/i.test(detail)) {
    return new OpenStackError(
      `${upper}_TLS_FAILED`,
      `TLS to ${service} at ${host} failed: ${code} ${detail}`,
      code === 'ERR_SSL_WRONG_VERSION_NUMBER'
        ? 'the URL says https but the server speaks plain http (or the reverse): fix the scheme'
        : 'point OS_CACERT (clouds.yaml `cacert`) at the PEM bundle of the CA that signed the server certificate',
      { service, method, url },
      { cause: err },
    );
  }
  if (UNREACHABLE_CODES.has(code)) {
    return new OpenStackError(
      `${upper}_UNREACHABLE`,
      `${service} at ${host} is unreachable: ${code} ${detail}`,
      service === 'keystone'
        ? 'check OS_AUTH_URL (host, port, http/https) and that Keystone is running and reachable from here; retried next cycle'
        : 'check the image endpoint in the catalog (or the endpoint override) and that Glance is running; retried next cycle',
      { service, method, url },
      { retryable: true, cause: err },
    );
  }
  return new OpenStackError(
    `${upper}_REQUEST_FAILED`,
    `${method} ${url} failed: ${code} ${detail}`,
    'see the cause; retried next cycle',
    { service, method, url },
    { retryable: true, cause: err },
  );
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

const ENTITIES: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

/**
 * The human part of an OpenStack error body: Keystone's `{"error":{"message"}}`, Glance's `{"message"}`
 * (which still carries `<br />` noise) or a bare HTML page, flattened to one line.
 */
export function cleanErrorMessage(body: string, maxChars = 300): string {
  let text = body;
  try {
    const doc: unknown = JSON.parse(body);
    if (doc && typeof doc === 'object') {
      const d = doc as { message?: unknown; error?: { message?: unknown }; title?: unknown };
      const msg = d.error?.message ?? d.message ?? d.title;
      if (typeof msg === 'string') text = msg;
    }
  } catch {
    // not JSON: an HTML page (drop its <head>, whose <title> repeats the status) or plain text
    text = body.replace(/<head>[\s\S]*?<\/head>/i, '');
  }
  const flat = text
    .replace(/<br\s*\/?>/gi, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
      if (e.startsWith('#x') || e.startsWith('#X')) return String.fromCodePoint(Number.parseInt(e.slice(2), 16));
      if (e.startsWith('#')) return String.fromCodePoint(Number.parseInt(e.slice(1), 10));
      return ENTITIES[e.toLowerCase()] ?? m;
    })
    .replace(/\s+/g, ' ')
    .trim();
  return flat.length > maxChars ? `${flat.slice(0, maxChars - 1)}…` : flat;
}
