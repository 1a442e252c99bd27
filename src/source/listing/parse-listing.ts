// The slim build parses with htmlparser2 only: enough for autoindex pages, and a third of the load time.
import * as cheerio from 'cheerio/slim';

/** One row of an Apache autoindex listing. */
export interface ListingEntry {
  /** The entry's name as linked, without a trailing slash for directories. */
  name: string;
  /** Absolute URL of the entry. */
  url: string;
  isDirectory: boolean;
  /** Last-modified time when the row carried one in a format we know. */
  modified?: Date;
  /** Apache's short size text (`584M`, `833`), when given. */
  sizeText?: string;
  /** The AddDescription text after the size (`Ubuntu Server 20.04 LTS (Focal Fossa) daily builds [END OF LIFE - ...]`). */
  description?: string;
}

const MONTHS: Record<string, number> = {
  jan: 0, feb: 1, mar: 2, apr: 3, may: 4, jun: 5, jul: 6, aug: 7, sep: 8, oct: 9, nov: 10, dec: 11,
};
const ISO_DATE_RE = /(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})/;
const APACHE_DATE_RE = /(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2})/;
const SIZE_RE = /(?:^|\s)(-|\d+(?:\.\d+)?[KMGTP]?)(?:\s|$)/;

/**
 * Parse an Apache mod_autoindex page (FancyIndexing `<pre>` rows, or the HTMLTable form) into entries
 * below `pageUrl`. Sort links, the parent link and links leaving the directory are skipped; other rows
 * are kept even when their date or size is missing or in an unknown form.
 */
export function parseListing(html: string, pageUrl: string): ListingEntry[] {
  const $ = cheerio.load(html);
  const base = new URL(pageUrl.endsWith('/') ? pageUrl : `${pageUrl}/`);
  const entries: ListingEntry[] = [];
  const seen = new Set<string>();
  $('a[href]').each((_, el) => {
    const href = $(el).attr('href') ?? '';
    if (!href || href.startsWith('?') || href.startsWith('#')) return;
    let url: URL;
    try {
      url = new URL(href, base);
    } catch {
      return;
    }
    if (url.origin !== base.origin || !url.pathname.startsWith(base.pathname) || url.pathname === base.pathname) return;
    let rest: string;
    try {
      rest = decodeURIComponent(url.pathname.slice(base.pathname.length));
    } catch {
      return; // a broken %-escape: not a row we could fetch anyway
    }
    const isDirectory = rest.endsWith('/');
    const name = isDirectory ? rest.slice(0, -1) : rest;
    // Only direct children: deeper links (page headers, READMEs) are not rows.
    if (!name || name.includes('/') || seen.has(name)) return;
    seen.add(name);
    const rowText = textAfter($, el);
    entries.push({ name, url: url.href, isDirectory, ...parseRowDetails(rowText) });
  });
  return entries;
}

/** The text that follows a link up to the end of its row (the rest of the `<pre>` line, or the table row). */
function textAfter($: cheerio.CheerioAPI, el: Parameters<cheerio.CheerioAPI>[0]): string {
  const row = $(el).closest('tr');
  if (row.length > 0) return row.text();
  let text = '';
  for (let node = (el as { next?: unknown }).next as { type?: string; data?: string; next?: unknown } | null | undefined;
    node; node = node.next as typeof node) {
    if (node.type === 'text') {
      const data = node.data ?? '';
      const nl = data.indexOf('\n');
      if (nl >= 0) return text + data.slice(0, nl);
      text += data;
    } else if (node.type === 'tag') {
      break;
    }
  }
  return text;
}

function parseRowDetails(text: string): Pick<ListingEntry, 'modified' | 'sizeText' | 'description'> {
  const details: Pick<ListingEntry, 'modified' | 'sizeText' | 'description'> = {};
  let rest = text;
  const iso = ISO_DATE_RE.exec(text);
  const apache = iso ? null : APACHE_DATE_RE.exec(text);
  if (iso) {
    const [, y, mo, d, h, mi] = iso.map(Number) as number[];
    details.modified = new Date(Date.UTC(y!, mo! - 1, d!, h!, mi!));
    rest = text.slice(iso.index + iso[0].length);
  } else if (apache) {
    const month = MONTHS[apache[2]!.toLowerCase()];
    if (month !== undefined) {
      details.modified = new Date(Date.UTC(Number(apache[3]), month, Number(apache[1]), Number(apache[4]), Number(apache[5])));
    }
    rest = text.slice(apache.index + apache[0].length);
  }
  const size = SIZE_RE.exec(rest.trimStart());
  if (size && size[1] !== '-') details.sizeText = size[1];
  if ((iso || apache) && size) {
    const description = rest.trimStart().slice(size.index + size[0].length).trim();
    if (description) details.description = description;
  }
  return details;
}
