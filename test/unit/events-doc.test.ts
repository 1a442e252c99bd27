import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EVENT_NAMES } from '../../src/events.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const EVENT_RE = /^(?:sync|image|source|http|glance|keystone|daemon)\.[a-z0-9_]+(?:\.[a-z0-9_]+)*$/;

/** Event names the code logs: quoted strings of event shape in src/ (src/events.ts itself left out). */
function usedInSource(): Set<string> {
  const files = readdirSync(path.join(root, 'src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts') && f !== 'events.ts');
  const used = new Set<string>();
  for (const f of files) {
    const text = readFileSync(path.join(root, 'src', f), 'utf8');
    for (const m of text.matchAll(/'((?:sync|image|source|http|glance|keystone|daemon)\.[a-z0-9_]+(?:\.[a-z0-9_]+)*)'/g)) used.add(m[1]!);
  }
  return used;
}

/** Event names docs/events.md documents: backquoted names in the first column of its tables. */
function documented(): Set<string> {
  const doc = readFileSync(path.join(root, 'docs/events.md'), 'utf8');
  const names = new Set<string>();
  for (const line of doc.split('\n')) {
    if (!line.startsWith('| `')) continue;
    const first = line.split('|')[1] ?? '';
    for (const m of first.matchAll(/`([^`]+)`/g)) if (EVENT_RE.test(m[1]!)) names.add(m[1]!);
  }
  return names;
}

test('every log event name used in src/ is in the catalogue (src/events.ts)', () => {
  const used = usedInSource();
  assert.ok(used.size > 30, `found ${used.size} event names`);
  assert.deepEqual([...used].filter((e) => !(EVENT_NAMES as string[]).includes(e)), [], 'add these to src/events.ts');
});

test('every catalogued event is emitted somewhere in src/', () => {
  const used = usedInSource();
  assert.deepEqual(EVENT_NAMES.filter((e) => !used.has(e)), [], 'remove these from src/events.ts (or emit them)');
});

test('every catalogued event is documented in docs/events.md', () => {
  const doc = documented();
  assert.deepEqual(EVENT_NAMES.filter((e) => !doc.has(e)), [], 'document these events in docs/events.md');
});

test('every event docs/events.md documents is in the catalogue', () => {
  assert.deepEqual([...documented()].filter((e) => !(EVENT_NAMES as string[]).includes(e)), [], 'add these to src/events.ts or drop them from the doc');
});
