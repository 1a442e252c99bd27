import { open } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Flush a file (or a directory, after a rename in it) to disk: what makes a rename durable. */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Flush a file and the directory entry naming it: after this, a crash leaves it whole where it is. */
export async function makeDurable(path: string): Promise<void> {
  await fsyncPath(path);
  await fsyncPath(dirname(path));
}
