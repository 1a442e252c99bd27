/**
 * The real qemu-img for tests of `diskFormat: raw`: installed from the Debian archive (qemu-utils) on
 * first use when this machine can (root, apt-get). Without it tests skip and say why; with CI=true the
 * reason becomes a failure, so a CI run cannot pass by skipping.
 */
import { execFileSync } from 'node:child_process';
import { describe, test } from 'node:test';

let checked: string | undefined | null = null;

function hasQemuImg(): boolean {
  try {
    execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Undefined when qemu-img is there (installing it if needed), else why not. */
export function ensureQemuImg(): string | undefined {
  if (checked !== null) return checked;
  checked = install();
  return checked;
}

function install(): string | undefined {
  if (hasQemuImg()) return undefined;
  if (process.getuid?.() !== 0) return 'qemu-img is missing and installing qemu-utils needs root';
  try {
    execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'qemu-utils'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } catch {
    try {
      execFileSync('apt-get', ['update', '-q'], { stdio: 'ignore' });
      execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'qemu-utils'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    } catch (err) {
      return `apt-get install qemu-utils failed: ${(err as Error).message.split('\n')[0]}`;
    }
  }
  return hasQemuImg() ? undefined : 'qemu-utils installed but qemu-img still not found';
}

/** `describe` for suites needing qemu-img: skips with the reason when it is unavailable, fails when CI=true. */
export function describeWithQemuImg(name: string, fn: () => void): void {
  const why = ensureQemuImg();
  if (why === undefined) describe(name, fn);
  else if (process.env.CI === 'true') describe(name, () => { test('needs qemu-img (CI=true: not skipping)', () => { throw new Error(why); }); });
  else describe(name, { skip: why }, () => {});
}
