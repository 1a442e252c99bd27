/**
 * The V8 code cache in dist/ is accepted only under the node flags it was made with (scripts/build.ts makes
 * it with the launcher's shebang flags): every way of starting the installed CLI must pass the same ones.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { launcherNodeFlags } from '../../scripts/build.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const read = (file: string) => readFileSync(path.join(REPO, file), 'utf8');

test('npm start, the systemd unit and the Dockerfile start dist/cli.js with the flags the code cache is made with', () => {
  const flags = launcherNodeFlags();
  assert.deepEqual(flags, ['--max-semi-space-size=1']);
  const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>; bin: Record<string, string> };
  assert.equal(pkg.bin['cloudimg-sync'], 'dist/cli.js');
  assert.equal(pkg.scripts.start, `node ${flags.join(' ')} dist/cli.js`);
  assert.match(read('config/cloudimg-sync.service'), new RegExp(`^ExecStart=/usr/bin/node ${flags.join(' ')} /opt/cloudimg-sync/dist/cli.js `, 'm'));
  assert.match(read('Dockerfile'), new RegExp(`^ENTRYPOINT \\["node", ${flags.map((f) => `"${f}"`).join(', ')}, "/app/dist/cli.js"\\]$`, 'm'));
});
