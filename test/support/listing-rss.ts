/**
 * Parses a 4 MiB listing of dense links in a process of its own and prints, as JSON, its RSS just before
 * parsing and its peak RSS: `node --import tsx test/support/listing-rss.ts`. Used by
 * test/unit/source-integrity.test.ts; the process does nothing else, so the peak is the parse's.
 */
import { parseListing } from '../../src/source/listing/parse-listing.js';

const LISTING_BYTES = 4 * 1024 * 1024;

function denseListing(): string {
  const rows: string[] = ['<html><body><pre>'];
  let size = rows[0]!.length;
  for (let i = 0; size < LISTING_BYTES - 64; i++) {
    const row = `<a href="${20000000 + i}/">d</a>\n`;
    rows.push(row);
    size += row.length;
  }
  rows.push('</pre></body></html>');
  return rows.join('');
}

const html = denseListing();
globalThis.gc?.();
const rssBeforeBytes = process.memoryUsage().rss;
let outcome: string;
try {
  outcome = `${parseListing(html, 'https://m.example/noble/').length} entries`;
} catch (err) {
  outcome = (err as { code?: string }).code ?? String(err);
}
const maxRssBytes = process.resourceUsage().maxRSS * 1024;
console.log(JSON.stringify({ listingBytes: html.length, outcome, rssBeforeBytes, maxRssBytes }));
