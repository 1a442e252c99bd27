import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateConfig } from '../../src/config/load.js';
import { redactUrl, redactUrlsIn } from '../../src/redact-url.js';
import { configError } from '../support/config-error.js';

const SECRET = 'S3cr3t-Tr4ce-7731';


describe('config errors never echo secrets', () => {
  test('a password given as a number names the key, not the value', () => {
    const message = configError({ targets: [{ name: 'g', type: 'glance', auth: { username: 'u', password: 7731 } }] });
    assert.match(message, /targets\[0\]\.auth\.password: \(value hidden\)/);
    assert.doesNotMatch(message, /7731/);
  });

  test('any key under a target\'s auth is hidden, whatever its name', () => {
    const message = configError({ targets: [{ name: 'g', type: 'glance', auth: { project_name: ['x', SECRET] } }] });
    assert.match(message, /targets\[0\]\.auth\.project_name/);
    assert.ok(!message.includes(SECRET), message);
  });

  test('duplicate target names name the duplicate and dump no target settings', () => {
    const message = configError({ targets: [
      { name: 'a', type: 'glance', auth: { password: SECRET } },
      { name: 'a', type: 'glance', auth: { password: SECRET } },
    ] });
    assert.match(message, /targets\[1\]\.name: "a": an earlier target has this name/);
    assert.ok(!message.includes(SECRET), message);
    assert.doesNotMatch(message, /\{/);
  });

  test('a target of unknown type is not dumped with its settings', () => {
    const message = configError({ targets: [{ name: 'a', auth: { password: SECRET } }] });
    assert.ok(!message.includes(SECRET), message);
  });

  test('a whole mapping in the wrong place is described, not printed', () => {
    const message = configError({ source: { releases: { token: SECRET } } });
    assert.match(message, /source\.releases: a mapping/);
    assert.ok(!message.includes(SECRET), message);
  });

  test('the password of a URL in a bad value is masked', () => {
    const message = configError({ source: { url: `https://mirror:${SECRET}@ex ample/` } });
    assert.match(message, /source\.url: "https:\/\/mirror:\*\*\*@ex ample\/"/);
    assert.ok(!message.includes(SECRET), message);
  });
});

test('a private mirror\'s credentials are taken out of source.url and never handed to Glance (web-download is refused)', () => {
  const c = validateConfig({ source: { url: `https://mirror:${SECRET}@m.example/ubuntu/` } }, 'x');
  assert.equal(c.source.url, 'https://m.example/ubuntu/');
  assert.equal(c.sourceUrlShown, 'https://mirror:***@m.example/ubuntu/');
  assert.ok(!JSON.stringify(c).includes(SECRET));
  const message = configError({ source: { url: `https://mirror:${SECRET}@m.example/` }, targets: [{ name: 'g', type: 'glance', method: 'web-download' }] });
  assert.match(message, /targets\[0\]\.method: web-download cannot fetch from a source\.url with a user and password/);
  assert.ok(!message.includes(SECRET));
});

describe('redactUrl', () => {
  test('masks the password and keeps the user, host and path', () => {
    assert.equal(redactUrl(`https://mirror:${SECRET}@m.example:8443/ubuntu/`), 'https://mirror:***@m.example:8443/ubuntu/');
    assert.equal(redactUrl('https://token-only@m.example/'), 'https://***@m.example/');
    assert.equal(redactUrl('https://m.example/a@b'), 'https://m.example/a@b');
  });

  test('masks every URL in a text, a password holding an @ included', () => {
    const text = `GET http://u:p@ss@proxy:3128/ then https://m:${SECRET}@m.example/x failed`;
    assert.equal(redactUrlsIn(text), 'GET http://u:***@proxy:3128/ then https://m:***@m.example/x failed');
  });
});
