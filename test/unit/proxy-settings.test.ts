import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { describeProxySettings, proxyFor, resolveProxySettings } from '../../src/fetch/proxy.js';

const P = 'http://proxy.example:3128';

describe('proxy settings, decided as curl and python-requests decide them', () => {
  test('which variable applies to which scheme', () => {
    const table: Array<[Record<string, string>, string, string | undefined]> = [
      [{ HTTPS_PROXY: P }, 'https://cloud-images.ubuntu.com/', P],
      [{ https_proxy: P, HTTPS_PROXY: 'http://other:1' }, 'https://cloud-images.ubuntu.com/', P],
      [{ HTTP_PROXY: P }, 'http://cloud-images.ubuntu.com/', P],
      [{ http_proxy: P }, 'http://cloud-images.ubuntu.com/', P],
      // An https URL never falls back to http_proxy (undici's EnvHttpProxyAgent would).
      [{ http_proxy: P }, 'https://cloud-images.ubuntu.com/', undefined],
      [{ HTTPS_PROXY: P }, 'http://cloud-images.ubuntu.com/', undefined],
      [{ ALL_PROXY: P }, 'https://cloud-images.ubuntu.com/', P],
      [{ all_proxy: P }, 'http://cloud-images.ubuntu.com/', P],
      [{ HTTPS_PROXY: 'proxy.example:3128' }, 'https://x/', P],
      [{}, 'https://x/', undefined],
    ];
    for (const [env, url, expected] of table) {
      assert.equal(proxyFor(url, resolveProxySettings(env)), expected, `${JSON.stringify(env)} ${url}`);
    }
  });

  test('NO_PROXY: *, domains with or without a leading dot, ports, addresses and CIDR blocks', () => {
    const table: Array<[string, string, boolean]> = [
      ['*', 'https://anything.example/', false],
      ['example.com', 'https://example.com/', false],
      ['example.com', 'https://glance.example.com:9292/', false],
      ['.example.com', 'https://glance.example.com/', false],
      ['*.example.com', 'https://glance.example.com/', false],
      ['example.com', 'https://notexample.com/', true],
      ['example.com:9292', 'https://glance.example.com:9292/', false],
      ['example.com:9292', 'https://keystone.example.com:5000/', true],
      ['10.0.0.0/8', 'http://10.20.30.40:5000/', false],
      ['10.0.0.0/8', 'http://11.0.0.1:5000/', true],
      ['127.0.0.1', 'http://127.0.0.1:5000/', false],
      ['fd00::/8', 'http://[fd00::1]:5000/', false],
      ['localhost, 127.0.0.0/8', 'http://127.0.0.1:9292/', false],
      ['EXAMPLE.com', 'https://Glance.Example.COM/', false],
      ['', 'https://example.com/', true],
    ];
    for (const [noProxy, url, proxied] of table) {
      const settings = resolveProxySettings({ HTTPS_PROXY: P, HTTP_PROXY: P, NO_PROXY: noProxy });
      assert.equal(proxyFor(url, settings) !== undefined, proxied, `NO_PROXY=${noProxy} ${url}`);
    }
    assert.equal(proxyFor('https://a.example/', resolveProxySettings({ HTTPS_PROXY: P, no_proxy: 'a.example', NO_PROXY: '' })), undefined, 'no_proxy first');
  });

  test('config http.proxy/noProxy replace the environment, a target\'s own replace those; "" means direct', () => {
    const env = { HTTPS_PROXY: 'http://env:1', NO_PROXY: 'internal' };
    const config = resolveProxySettings(env, { proxy: P });
    assert.equal(proxyFor('https://x/', config), P);
    assert.equal(config.origin, 'config');
    assert.equal(proxyFor('https://internal/', config), undefined, 'NO_PROXY still applies when only proxy is configured');
    assert.equal(proxyFor('https://internal/', resolveProxySettings(env, { proxy: P, noProxy: [] })), P);
    const direct = resolveProxySettings(env, { proxy: P }, { proxy: '' });
    assert.equal(proxyFor('https://x/', direct), undefined);
    assert.equal(direct.origin, 'none');
    assert.equal(proxyFor('https://cloud.local/', resolveProxySettings(env, undefined, { noProxy: 'cloud.local' })), undefined);
  });

  test('a proxy password is never shown; a bad proxy URL is a configuration error naming the cure', () => {
    const shown = describeProxySettings(resolveProxySettings({ HTTPS_PROXY: 'http://ops:s3cret@proxy:3128' }));
    assert.equal(shown.httpsProxy, 'http://ops:***@proxy:3128');
    assert.doesNotMatch(JSON.stringify(shown), /s3cret/);
    assert.throws(() => resolveProxySettings({ HTTPS_PROXY: 'socks5://u:pw@proxy:1080' }),
      (e: Error & { code?: string }) => e.code === 'CONFIG_INVALID' && /only http:\/\/ and https:\/\/ proxies/.test(e.message) && !e.message.includes('pw@'));
  });
});
