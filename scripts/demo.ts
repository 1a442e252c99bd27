/**
 * `npm run demo`: the whole pipeline offline. Starts the fixture mirror of cloud-images.ubuntu.com on
 * loopback, brings up the local Keystone + Glance (test/openstack/up.sh; root on Debian), runs one
 * `sync --once` into Glance and a directory, then prints `status`. Everything lives in a temp dir.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMirror } from '../test/fixtures/mirror/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'cloudimg-sync-demo-'));

function openstackEnv(): Record<string, string> {
  process.stderr.write('demo: starting the local Keystone + Glance (first time: installs Debian packages)...\n');
  const exports = execFileSync('bash', [path.join(root, 'test/openstack/up.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return Object.fromEntries([...exports.matchAll(/^export (OS_[A-Z_]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
}

const mirror = await startMirror({ releases: [{ codename: 'noble', serials: ['20261120'], arches: ['amd64', 'arm64'] }], imageSizeBytes: 4 * 1024 * 1024 });
try {
  const env = { ...process.env, ...openstackEnv() };
  const config = path.join(dir, 'config.yaml');
  writeFileSync(config, [
    `source: { url: "${mirror.url}", keyring: "${mirror.keyringPath}", releases: [noble], arches: [amd64, arm64] }`,
    `stateDir: "${dir}/state"`,
    `cacheDir: "${dir}/cache"`,
    'targets:',
    `  - { name: demo-glance, type: glance, method: stream, visibility: private, nameTemplate: "demo Ubuntu {version} {arch} {serial}" }`,
    `  - { name: demo-dir, type: directory, path: "${dir}/images" }`,
  ].join('\n'));
  process.stderr.write(`demo: mirror ${mirror.url}, config ${config}\n`);
  // Asynchronous: the mirror answers from this process's event loop while the CLI runs.
  const cli = (...args: string[]) => new Promise<number | null>((resolve) => {
    spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli.ts'), '--config', config, ...args], { env, stdio: 'inherit', cwd: root })
      .on('close', resolve);
  });
  const syncStatus = await cli('--pretty', 'sync', '--once');
  process.stdout.write('\n$ cloudimg-sync status\n');
  await cli('status');
  process.stdout.write(`\nThe images are in Glance (openstack image list --property cloudimg_sync_target=demo-glance) and in ${dir}/images.\n`);
  process.exitCode = syncStatus ?? 1;
} finally {
  await mirror.close();
  if (process.env.DEMO_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
}
