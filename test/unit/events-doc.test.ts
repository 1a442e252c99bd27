import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

test('every log event name used in src/ is documented in docs/events.md', () => {
  const doc = readFileSync(path.join(root, 'docs/events.md'), 'utf8');
  const files = readdirSync(path.join(root, 'src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  const used = new Set<string>();
  for (const f of files) {
    const text = readFileSync(path.join(root, 'src', f), 'utf8');
    for (const m of text.matchAll(/'((?:sync|image|source|http|glance|keystone|daemon)\.[a-z0-9_]+(?:\.[a-z0-9_]+)*)'/g)) used.add(m[1]!);
  }
  assert.ok(used.size > 30, `found ${used.size} event names`);
  const missing = [...used].filter((e) => !doc.includes(`\`${e}\``));
  assert.deepEqual(missing, [], 'document these events in docs/events.md');
});
