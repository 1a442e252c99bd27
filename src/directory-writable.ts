import { constants, existsSync } from 'node:fs';
import { access, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * Whether this process can write `dir` without changing anything lasting: an existing directory takes a probe
 * file; a missing one needs a writable nearest ancestor. Returns what was found; throws saying why not.
 */
export async function probeWritableDirectory(dir: string): Promise<string> {
  const abs = path.resolve(dir);
  if (existsSync(abs)) {
    const probe = path.join(abs, `.cloudimg-sync-check-${process.pid}`);
    await writeFile(probe, '');
    await rm(probe, { force: true });
    return `${abs} writable`;
  }
  let ancestor = path.dirname(abs);
  while (!existsSync(ancestor)) ancestor = path.dirname(ancestor);
  if (!(await stat(ancestor)).isDirectory()) throw new Error(`${ancestor} is not a directory, so ${abs} cannot be created`);
  await access(ancestor, constants.W_OK);
  return `${abs} does not exist yet; it will be created under ${ancestor}`;
}
