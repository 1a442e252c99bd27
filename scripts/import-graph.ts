/**
 * Which folders of src/ import which: `node --import tsx scripts/import-graph.ts [srcDir]`.
 * One line per folder with the folders it imports (files at src/ top level count as `(root)`), then any
 * import that goes against the pipeline's layering, listed in LAYER below (a folder may import only lower layers).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const srcDir = path.resolve(process.argv[2] ?? 'src');
/** Lower layers first; a folder may import its own layer or lower ones. */
const LAYER: Record<string, number> = {
  '(root)': 0, fetch: 1, state: 1, source: 2, openstack: 2, targets: 3, config: 4, sync: 5, daemon: 6, commands: 7, cli: 8,
};

function folderOf(file: string): string {
  const rel = path.relative(srcDir, file);
  const parts = rel.split(path.sep);
  if (parts.length === 1) return rel === 'cli.ts' ? 'cli' : '(root)';
  return parts[0]!;
}

const edges = new Map<string, Map<string, number>>();
const files = readdirSync(srcDir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
for (const f of files) {
  const file = path.join(srcDir, f);
  const from = folderOf(file);
  const text = readFileSync(file, 'utf8');
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'(\.[^']+)'/g)) {
    const to = folderOf(path.resolve(path.dirname(file), m[1]!));
    if (to === from) continue;
    const row = edges.get(from) ?? new Map<string, number>();
    row.set(to, (row.get(to) ?? 0) + 1);
    edges.set(from, row);
  }
}
const upward: string[] = [];
for (const from of [...edges.keys()].sort((a, b) => (LAYER[a] ?? 99) - (LAYER[b] ?? 99))) {
  const row = edges.get(from)!;
  const targets = [...row.entries()].sort((a, b) => (LAYER[a[0]] ?? 99) - (LAYER[b[0]] ?? 99));
  console.log(`${from.padEnd(10)} -> ${targets.map(([to, n]) => `${to}(${n})`).join(' ')}`);
  for (const [to] of targets) if ((LAYER[to] ?? 99) > (LAYER[from] ?? 99)) upward.push(`${from} -> ${to}`);
}
console.log(upward.length ? `upward imports: ${upward.join(', ')}` : 'upward imports: none');
