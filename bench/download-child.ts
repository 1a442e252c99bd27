/**
 * The "our side" of the download benchmark, run as its own process so that its peak RSS is ours alone
 * (the mirror and the bench harness live in other processes). bench/run.ts bundles it with esbuild and
 * runs it with plain `node`, as the built CLI would run, so no TypeScript loader inflates the figures.
 *
 *   node download-child.mjs download URL DEST SHA256   downloadFile() with sha256 verification
 *   node download-child.mjs discard URL                the same HTTP client, body thrown away (no hash, no disk)
 *   node download-child.mjs hash URL ALGO[,ALGO...]     the same HTTP client, every chunk hashed, nothing stored:
 *                                                      what node, undici and the digests cost (bench F's floor)
 *   node download-child.mjs idle                       imports only: the floor of RSS and start-up
 *
 * Prints one JSON line: { "ms": time inside the process, "bytes": ... }.
 */
// First, as in the CLI's launcher: the flags node runs with (--liftoff-only for undici's parser among them).
import '../src/v8-flags.js';
import { createHash } from 'node:crypto';
import { downloadFile } from '../src/fetch/download.js';
import { createHttpClient } from '../src/fetch/http-client.js';
import { request } from '../src/fetch/undici.js';

async function main(): Promise<void> {
  const [mode, url, dest, sha256] = process.argv.slice(2);
  if (mode === 'idle') {
    process.stdout.write(`${JSON.stringify({ ms: 0, bytes: 0 })}\n`);
    return;
  }
  if (!url) throw new Error('usage: download-child download URL DEST SHA256 | hash URL ALGOS | discard URL | idle');
  // The client the sync CLI uses (our timeouts, User-Agent, baseline-only wasm compiler).
  const client = createHttpClient();
  const startedMs = performance.now();
  try {
    if (mode === 'download') {
      if (!dest || !sha256) throw new Error('download needs URL DEST SHA256');
      const result = await downloadFile(url, dest, { client, expectedSha256: sha256, retries: 0 });
      process.stdout.write(`${JSON.stringify({ ms: performance.now() - startedMs, bytes: result.sizeBytes })}\n`);
    } else if (mode === 'hash' || mode === 'discard') {
      // The client is an Agent from undici's own file (src/fetch/undici.ts), without the index's request mixin.
      const hashes = mode === 'hash' ? (dest ?? 'sha256').split(',').map((algorithm) => createHash(algorithm)) : [];
      const response = await request(url, { dispatcher: client, method: 'GET' });
      let bytes = 0;
      for await (const chunk of response.body) {
        bytes += (chunk as Buffer).length;
        for (const h of hashes) h.update(chunk as Buffer);
      }
      const digests = mode === 'hash' ? { digests: hashes.map((h) => h.digest('hex')) } : {};
      process.stdout.write(`${JSON.stringify({ ms: performance.now() - startedMs, bytes, ...digests })}\n`);
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
  } finally {
    await client.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`download-child: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
