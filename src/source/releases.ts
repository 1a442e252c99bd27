/**
 * Ubuntu codename <-> version, from Debian's distro-info-data (ubuntu.csv). Kept current by hand; a release
 * missing here still works on the release channel, whose file names carry the version (see discover.ts).
 */
const UBUNTU_RELEASES: ReadonlyArray<readonly [codename: string, version: string]> = [
  ['warty', '4.10'], ['hoary', '5.04'], ['breezy', '5.10'], ['dapper', '6.06'], ['edgy', '6.10'], ['feisty', '7.04'],
  ['gutsy', '7.10'], ['hardy', '8.04'], ['intrepid', '8.10'], ['jaunty', '9.04'], ['karmic', '9.10'],
  ['lucid', '10.04'], ['maverick', '10.10'], ['natty', '11.04'], ['oneiric', '11.10'], ['precise', '12.04'],
  ['quantal', '12.10'], ['raring', '13.04'], ['saucy', '13.10'], ['trusty', '14.04'], ['utopic', '14.10'],
  ['vivid', '15.04'], ['wily', '15.10'], ['xenial', '16.04'], ['yakkety', '16.10'], ['zesty', '17.04'],
  ['artful', '17.10'], ['bionic', '18.04'], ['cosmic', '18.10'], ['disco', '19.04'], ['eoan', '19.10'],
  ['focal', '20.04'], ['groovy', '20.10'], ['hirsute', '21.04'], ['impish', '21.10'], ['jammy', '22.04'],
  ['kinetic', '22.10'], ['lunar', '23.04'], ['mantic', '23.10'], ['noble', '24.04'], ['oracular', '24.10'],
  ['plucky', '25.04'], ['questing', '25.10'], ['resolute', '26.04'], ['stonking', '26.10'],
];

const VERSION_BY_CODENAME = new Map(UBUNTU_RELEASES.map(([c, v]) => [c, v]));
const CODENAME_BY_VERSION = new Map(UBUNTU_RELEASES.map(([c, v]) => [v, c]));

export interface ReleaseName {
  codename: string;
  /** Empty when the table does not know the codename yet. */
  version: string;
}

const CODENAME_RE = /^[a-z][a-z0-9-]*$/;
const VERSION_RE = /^\d{2}\.\d{2}$/;

/** Resolve `noble` or `24.04` (or `24.04 LTS`); undefined when it is neither a known version nor a codename. */
export function resolveRelease(name: string): ReleaseName | undefined {
  const trimmed = name.trim().toLowerCase().replace(/\s*lts$/, '');
  if (VERSION_RE.test(trimmed)) {
    const codename = CODENAME_BY_VERSION.get(trimmed);
    return codename ? { codename, version: trimmed } : undefined;
  }
  if (CODENAME_RE.test(trimmed)) return { codename: trimmed, version: VERSION_BY_CODENAME.get(trimmed) ?? '' };
  return undefined;
}

export function knownReleases(): string[] {
  return UBUNTU_RELEASES.map(([c, v]) => `${c} (${v})`);
}
