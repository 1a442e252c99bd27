/**
 * Every target type, one line each. The config union, `createTargets`, `check` and the "allowed: ..."
 * message are derived from this list; adding a type is its folder plus one line here.
 */
import type { z } from 'zod';
import { directoryTargetType } from './directory/index.js';
import { glanceTargetType } from './glance/index.js';
import { mirrorTargetType } from './mirror/index.js';
import type { TargetType } from './target.js';

export const TARGET_TYPES = [
  directoryTargetType,
  glanceTargetType,
  mirrorTargetType,
] as const satisfies readonly TargetType[];

type Registered = typeof TARGET_TYPES;

function schemasOf<T extends readonly TargetType[]>(types: T): { -readonly [K in keyof T]: T[K] extends { schema: infer S } ? S : never } {
  return types.map((t) => t.schema) as never;
}

/** The schemas of every registered type, for the config's union on `type`. */
export const targetConfigSchemas = schemasOf(TARGET_TYPES);
/** The configured target's settings: a union on `type` over every registered type. */
export type TargetConfig = z.output<Registered[number]['schema']>;

/** Names of the registered types, for messages ("allowed: directory, glance"). */
export const TARGET_TYPE_NAMES: readonly string[] = TARGET_TYPES.map((t) => t.type);

export function targetTypeOf(type: string): TargetType | undefined {
  return (TARGET_TYPES as readonly TargetType[]).find((t) => t.type === type);
}
