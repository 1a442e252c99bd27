import { open } from 'node:fs/promises';

/** Flush a file (or a directory, after a rename in it) to disk: what makes a rename durable. */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
