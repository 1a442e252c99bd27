/**
 * Credentials in URLs (`https://user:pass@host/`) never reach a log, an error, the state database or a
 * target: every URL shown or stored goes through here. The user stays (it says which account), the password
 * becomes `***`; a user without a password may itself be a token and is masked whole.
 */

const MASK = '***';

/** `https://user:pass@host/x` -> `https://user:***@host/x`; anything that is not such a URL is returned unchanged. */
export function redactUrl(url: string): string {
  return redactUrlsIn(url);
}

/** `scheme://userinfo@` anywhere in a text (an error message, a header dump), masked as redactUrl does. */
export function redactUrlsIn(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#]*)@/gi, (_m, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    if (colon < 0) return `${scheme}${MASK}@`;
    return `${scheme}${userinfo.slice(0, colon)}:${MASK}@`;
  });
}
