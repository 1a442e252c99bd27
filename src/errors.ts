/**
 * Every failure an operator can meet is a SyncError with a stable `code` (for alerts and state) and a
 * `cure` (what to do about it). Whether an error is worth retrying is decided here, in one place.
 */
export class SyncError extends Error {
  readonly code: string;
  readonly cure: string;
  readonly retryable: boolean;

  constructor(code: string, message: string, cure: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'SyncError';
    this.code = code;
    this.cure = cure;
    this.retryable = options.retryable ?? false;
  }

  /** One line for a terminal or a log: cause, then fix. */
  oneLine(): string {
    return `${this.code}: ${this.message}${this.cure ? ` (fix: ${this.cure})` : ''}`;
  }
}

export class ConfigError extends SyncError {
  constructor(message: string, cure: string) {
    super('CONFIG_INVALID', message, cure);
  }
}

export class ChecksumMismatchError extends SyncError {
  constructor(readonly file: string, readonly expected: string, readonly actual: string) {
    super(
      'CHECKSUM_MISMATCH',
      `sha256 of ${file} is ${actual}, the signed SHA256SUMS says ${expected}`,
      'the download was corrupted or tampered with; it was deleted and will be fetched again next cycle',
      { retryable: true },
    );
  }
}

export class SignatureError extends SyncError {
  constructor(url: string, detail: string) {
    super(
      'SIGNATURE_INVALID',
      `signature of ${url} does not verify: ${detail}`,
      'check source.keyring points at the Ubuntu cloud-image keyring; never publish unsigned lists',
    );
  }
}

export class HttpStatusError extends SyncError {
  constructor(readonly url: string, readonly status: number, detail = '') {
    super(
      status === 404 ? 'HTTP_NOT_FOUND' : `HTTP_${status}`,
      `GET ${url} answered ${status}${detail ? `: ${detail}` : ''}`,
      status >= 500 || status === 429
        ? 'the server is failing; it is retried with backoff and next cycle'
        : 'check source.url and that the release/serial still exists upstream',
      { retryable: status >= 500 || status === 429 },
    );
  }
}

/** Network-level failures worth another try: resets, timeouts, refused connections. */
const RETRYABLE_NETWORK_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'TRUNCATED_BODY',
]);

export function isRetryable(err: unknown): boolean {
  if (err instanceof SyncError) return err.retryable;
  const code = errorCode(err);
  return code !== undefined && RETRYABLE_NETWORK_CODES.has(code);
}

/** The stable code of any error (ours, undici's, or Node's), following `cause` one level. */
export function errorCode(err: unknown): string | undefined {
  if (err && typeof err === 'object') {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const cause = (err as { cause?: unknown }).cause;
    if (cause && typeof cause === 'object') {
      const causeCode = (cause as { code?: unknown }).code;
      if (typeof causeCode === 'string') return causeCode;
    }
  }
  return undefined;
}

const NETWORK_CURE = 'check network access to that host (DNS, firewall, proxy) or the configured URL; retried next cycle';

export function describeError(err: unknown): string {
  if (err instanceof SyncError) return err.oneLine();
  if (err instanceof Error) {
    const code = errorCode(err);
    if (code && (RETRYABLE_NETWORK_CODES.has(code) || code === 'ENOTFOUND')) return `${code}: ${err.message} (fix: ${NETWORK_CURE})`;
    return code && !err.message.startsWith(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
