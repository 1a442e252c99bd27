import { SyncError } from '../errors.js';

/**
 * The life of an image in the local pipeline, and of its publication on each target. Every state change
 * goes through `assertImageTransition` / `assertPublicationTransition`: the one place that says what may follow what.
 */
export const IMAGE_STATES = ['discovered', 'downloading', 'downloaded', 'verified', 'failed'] as const;
export type ImageState = (typeof IMAGE_STATES)[number];

export const PUBLICATION_STATES = ['publishing', 'published', 'failed', 'hidden', 'removed'] as const;
export type PublicationState = (typeof PUBLICATION_STATES)[number];

/**
 * Downloading may start from every persisted state: a crash can leave any of them behind, and the next run
 * resumes from there (a `downloaded` row comes from versions that wrote download and verification as two
 * steps; its file is re-verified or fetched again). Download + verification is one step: downloading -> verified.
 */
const IMAGE_NEXT: Record<ImageState, readonly ImageState[]> = {
  discovered: ['downloading'],
  // downloading -> downloading: a resumed download after a crash. -> discovered: no longer needed (every target
  // adopted a copy it already held).
  downloading: ['downloading', 'verified', 'failed', 'discovered'],
  downloaded: ['downloading', 'verified', 'failed', 'discovered'],
  // verified -> discovered: the cached file is gone (published everywhere, or cleaned) and is needed again.
  verified: ['discovered', 'downloading'],
  failed: ['downloading', 'discovered'],
};

const PUBLICATION_NEXT: Record<PublicationState, readonly PublicationState[]> = {
  // publishing -> publishing: a retry after a crash mid-upload.
  publishing: ['publishing', 'published', 'failed'],
  published: ['hidden', 'removed', 'publishing'],
  failed: ['publishing', 'removed'],
  hidden: ['removed', 'published', 'publishing'],
  removed: ['publishing'],
};

export function assertImageTransition(from: ImageState, to: ImageState, key: string): void {
  if (!IMAGE_NEXT[from].includes(to)) {
    throw new SyncError('STATE_TRANSITION', `image ${key} cannot go from ${from} to ${to}`, 'this is a bug; please report it with the log');
  }
}

export function assertPublicationTransition(from: PublicationState | undefined, to: PublicationState, key: string): void {
  const allowed = from === undefined ? to === 'publishing' : PUBLICATION_NEXT[from].includes(to);
  if (!allowed) {
    throw new SyncError('STATE_TRANSITION', `publication ${key} cannot go from ${from ?? 'nothing'} to ${to}`, 'this is a bug; please report it with the log');
  }
}
