/**
 * Every source type, one line each. `config.source` is a union on `type` derived from this list (the first
 * entry is the default when `type` is left out), as are `createSource` and the "allowed: ..." message.
 */
import type { z } from 'zod';
import { listingSourceType } from './listing/index.js';
import { simplestreamsSourceType } from './simplestreams/index.js';
import type { Source, SourceCommon, SourceType } from './source.js';

export const SOURCE_TYPES = [
  listingSourceType,
  simplestreamsSourceType,
] as const satisfies readonly SourceType[];

type Registered = typeof SOURCE_TYPES;

function schemasOf<T extends readonly SourceType[]>(types: T): { -readonly [K in keyof T]: T[K] extends { schema: infer S } ? S : never } {
  return types.map((t) => t.schema) as never;
}

export const sourceConfigSchemas = schemasOf(SOURCE_TYPES);
export type SourceConfig = z.output<Registered[number]['schema']>;
export const DEFAULT_SOURCE_TYPE = SOURCE_TYPES[0].type;
export const SOURCE_TYPE_NAMES: readonly string[] = SOURCE_TYPES.map((t) => t.type);

/** The configured source. */
export function createSource(config: { source: SourceConfig; streams: SourceCommon['streams']; keep: number; keyringPath: string }): Source {
  const type = (SOURCE_TYPES as readonly SourceType[]).find((t) => t.type === config.source.type);
  if (!type) throw new Error(`unknown source type ${config.source.type}`);
  return type.create(config.source, { streams: config.streams, keep: config.keep, keyringPath: config.keyringPath });
}
