// A streaming tokenizer (htmlparser2's Parser with a handler): no DOM is built, so a page costs the rows it
// yields, not a tree of every node in it (a 4 MiB page of dense links took 255 MB as a cheerio DOM).
import { Parser } from 'htmlparser2';
import { SyncError } from '../../errors.js';

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
/** Longest row text kept for its date and size: a real row's rest is under 100 characters. */
const ROW_TEXT_MAX = 512;

/**
 * Most rows a listing may have. Ubuntu's largest (a release's serial folders) has a few hundred; a page with
 * more is not an autoindex of cloud images, and every row kept costs memory.
 */
export const LISTING_MAX_ROWS = 10_000;

export class ListingTooLargeError extends SyncError {
  constructor(readonly url: string) {
    super('LISTING_TOO_LARGE', `${url} lists more than ${LISTING_MAX_ROWS} entries, more than any cloud-image folder has`,
      'check source.url points at cloud-images.ubuntu.com or a faithful mirror');
  }
}

/** A link found on the page that names a row. */
interface LinkRow {
  name: string;
  url: string;
  isDirectory: boolean;
}

/** A `<pre>` row's link, waiting for the text after it. */
interface PendingRow extends LinkRow {
  text: string;
}

/**
 * Parse an Apache mod_autoindex page (FancyIndexing `<pre>` rows, or the HTMLTable form) into entries
 * below `pageUrl`. Sort links, the parent link and links leaving the directory are skipped; other rows
 * are kept even when their date or size is missing or in an unknown form. A row's details are the text
 * after its link up to the end of the line (`<pre>`), or the text of its table row. More than LISTING_MAX_ROWS
 * rows: ListingTooLargeError.
 */
export function parseListing(html: string, pageUrl: string): ListingEntry[] {
  const base = new URL(pageUrl.endsWith('/') ? pageUrl : `${pageUrl}/`);
  const entries: ListingEntry[] = [];
  const seen = new Set<string>();
  /** The link of a `<pre>` row whose line has not ended yet. */
  let lineRow: PendingRow | undefined;
  /** Links of the table row being read, and its text so far. */
  let tableRows: LinkRow[] | undefined;
  let tableText = '';
  let inLink = false;

  const finish = (row: LinkRow, text: string): void => {
    if (entries.length >= LISTING_MAX_ROWS) throw new ListingTooLargeError(pageUrl);
    entries.push({ name: row.name, url: row.url, isDirectory: row.isDirectory, ...parseRowDetails(text) });
  };
  const endLine = (): void => {
    if (lineRow) finish(lineRow, lineRow.text);
    lineRow = undefined;
  };

  const parser = new Parser({
    onopentag(tag, attributes) {
      if (tag === 'tr') {
        endLine();
        tableRows = [];
        tableText = '';
      }
      if (tag === 'a') inLink = true;
      // Any tag ends the text of a `<pre>` row, as a new row's link does.
      endLine();
      if (tag !== 'a' || attributes.href === undefined) return;
      const row = childRow(attributes.href, base, seen);
      if (!row) return;
      if (tableRows) tableRows.push(row);
      else lineRow = { ...row, text: '' };
    },
    onclosetag(tag) {
      if (tag === 'a') {
        // The link's own text is not the row's details: they start after </a>.
        inLink = false;
        return;
      }
      if (tag === 'tr' && tableRows) {
        for (const row of tableRows) finish(row, tableText);
        tableRows = undefined;
      }
    },
    ontext(data) {
      if (tableRows && tableText.length < ROW_TEXT_MAX) tableText += data.slice(0, ROW_TEXT_MAX);
      if (!lineRow || inLink) return;
      const nl = data.indexOf('\n');
      if (nl >= 0) {
        lineRow.text += data.slice(0, nl);
        endLine();
      } else if (lineRow.text.length < ROW_TEXT_MAX) {
        lineRow.text += data.slice(0, ROW_TEXT_MAX);
      }
    },
  }, { decodeEntities: true });
  parser.write(html);
  parser.end();
  endLine();
  if (tableRows) for (const row of tableRows) finish(row, tableText);
  return entries;
}

/** The direct child of the page a link names, or undefined for sort links, parents, deeper and foreign links. */
function childRow(href: string, base: URL, seen: Set<string>): LinkRow | undefined {
  if (!href || href.startsWith('?') || href.startsWith('#')) return undefined;
  let url: URL;
  try {
    url = new URL(href, base);
  } catch {
    return undefined;
  }
  if (url.origin !== base.origin || !url.pathname.startsWith(base.pathname) || url.pathname === base.pathname) return undefined;
  let rest: string;
  try {
    rest = decodeURIComponent(url.pathname.slice(base.pathname.length));
  } catch {
    return undefined; // a broken %-escape: not a row we could fetch anyway
  }
  const isDirectory = rest.endsWith('/');
  const name = isDirectory ? rest.slice(0, -1) : rest;
  // Only direct children: deeper links (page headers, READMEs) are not rows.
  if (!name || name.includes('/') || seen.has(name)) return undefined;
  seen.add(name);
  return { name, url: url.href, isDirectory };
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
