/**
 * Lint step: the import graph of wire/, server/, client/, cli/ and test/ has no cycle. Every import
 * counts, type-only ones too (`import type`, `export ... from`, `import()`, `require()`):
 * a type cycle still ties two modules into one unit that can only be read, tested and
 * moved together. It also (ENFORCE_SERVER_CLIENT_BOUNDARY) checks the layering of the
 * top-level modules (MAY_IMPORT): the server and the SDK do not import each other, both
 * take the contract from wire/, which imports neither, and only cli/ (and test/) may
 * import both.
 * Exit 1 listing every cycle (one path per strongly connected component) and every
 * boundary crossing.
 *
 * Resolution is the subset of Node's this repository uses: relative specifiers to a .ts
 * file, a directory's index.ts, or a .js/.json spelling of them. Package imports are
 * outside the graph.
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/** The source trees whose modules make up the graph (relative to the repository root). */
export const SOURCE_DIRS = ['wire', 'server', 'client', 'cli', 'test'] as const;

/**
 * "No file under server/ imports from client/, no file under client/ imports from
 * server/, and wire/ imports neither": the wire contract (proto loader, generated types,
 * reasons, metadata keys, shared limits) is its own module (issue 11, item 1).
 */
export const ENFORCE_SERVER_CLIENT_BOUNDARY = true;

/**
 * Which top-level directories a module under each may import (its own always). client/
 * includes the load tools (client/loadtest), which start a server through bin/daxd.js,
 * never by importing it. test/ may import anything. A directory not listed is outside
 * the rule.
 */
export const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  wire: ['wire'],
  server: ['server', 'wire'],
  client: ['client', 'wire'],
  cli: ['cli', 'server', 'client', 'wire'],
};

/** Directories never scanned (build output, dependencies). */
const SKIPPED_DIRS = new Set(['node_modules', 'dist', 'build']);
/** Files per scan, directory depth: far above this repository, so a runaway walk stops. */
const SCAN_FILES_MAX = 20_000;
const SCAN_DEPTH_MAX = 32;

/** Module -> the modules it imports; keys and values are repository-relative paths with '/'. */
export type ImportGraph = Map<string, string[]>;

export interface BoundaryViolation {
  from: string;
  to: string;
}

/** The .ts files under `dir` (repository-relative), sorted, .d.ts excluded; `tool` names the lint step in errors. */
export function sourceFiles(root: string, dir: string, tool = 'check-imports'): string[] {
  const out: string[] = [];
  const walk = (rel: string, depth: number): void => {
    if (depth > SCAN_DEPTH_MAX) throw new Error(`${tool}: ${rel} is deeper than ${SCAN_DEPTH_MAX} levels`);
    const abs = path.join(root, rel);
    if (!fs.existsSync(abs)) return;
    for (const e of fs.readdirSync(abs, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const child = path.posix.join(rel, e.name);
      if (e.isDirectory()) {
        if (!SKIPPED_DIRS.has(e.name)) walk(child, depth + 1);
      } else if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
        out.push(child);
        if (out.length > SCAN_FILES_MAX) throw new Error(`${tool}: more than ${SCAN_FILES_MAX} files under ${dir}`);
      }
    }
  };
  walk(dir, 0);
  return out;
}

/** The module a relative specifier names, if it is one of `known`; null for packages and files outside the graph. */
function resolve(fromFile: string, specifier: string, known: ReadonlySet<string>): string | null {
  if (!specifier.startsWith('./') && !specifier.startsWith('../')) return null;
  const base = path.posix.normalize(path.posix.join(path.posix.dirname(fromFile), specifier));
  const stem = base.replace(/\.(js|ts)$/, '');
  for (const candidate of [`${stem}.ts`, `${stem}/index.ts`]) if (known.has(candidate)) return candidate;
  return null;
}

/** The import graph of the given files (contents by repository-relative path). */
export function graphOf(files: ReadonlyMap<string, string>): ImportGraph {
  const known = new Set(files.keys());
  const graph: ImportGraph = new Map();
  for (const [file, text] of files) {
    // preProcessFile finds import/export declarations (type-only ones too), import() and
    // require() with string literals, without type-checking anything.
    const info = ts.preProcessFile(text, true, true);
    const targets = new Set<string>();
    for (const ref of info.importedFiles) {
      const to = resolve(file, ref.fileName, known);
      if (to !== null) targets.add(to);
    }
    graph.set(file, [...targets].sort());
  }
  return graph;
}

/** The import graph of SOURCE_DIRS under `root`. */
export function graphOfTree(root: string, dirs: readonly string[] = SOURCE_DIRS): ImportGraph {
  const files = new Map<string, string>();
  for (const dir of dirs) for (const f of sourceFiles(root, dir)) files.set(f, fs.readFileSync(path.join(root, f), 'utf8'));
  return graphOf(files);
}

/** Modules tied into one unit by imports: a strongly connected component, and one cycle through it. */
export interface ImportKnot {
  /** Every module of the component, sorted. */
  modules: string[];
  /** A shortest cycle through modules[0], as a path that starts and ends there. */
  cycle: string[];
}

/** One cycle per knot (see findKnots). */
export function findCycles(graph: ImportGraph): string[][] {
  return findKnots(graph).map((k) => k.cycle);
}

/**
 * Every strongly connected component of more than one module (or a module importing
 * itself), with one cycle through it. Tarjan's algorithm, iterative (no recursion depth
 * limit), O(V + E).
 */
export function findKnots(graph: ImportGraph): ImportKnot[] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let next = 0;
  const edges = (v: string): string[] => graph.get(v) ?? [];

  for (const start of [...graph.keys()].sort()) {
    if (index.has(start)) continue;
    const work: Array<{ v: string; i: number }> = [{ v: start, i: 0 }];
    index.set(start, next); low.set(start, next); next++;
    stack.push(start); onStack.add(start);
    while (work.length > 0) {
      const top = work[work.length - 1];
      const out = edges(top.v);
      if (top.i < out.length) {
        const w = out[top.i++];
        if (!index.has(w)) {
          index.set(w, next); low.set(w, next); next++;
          stack.push(w); onStack.add(w);
          work.push({ v: w, i: 0 });
        } else if (onStack.has(w)) {
          low.set(top.v, Math.min(low.get(top.v)!, index.get(w)!));
        }
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1].v;
        low.set(parent, Math.min(low.get(parent)!, low.get(top.v)!));
      }
      if (low.get(top.v) === index.get(top.v)) {
        const component: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          component.push(w);
        } while (w !== top.v);
        if (component.length > 1 || edges(top.v).includes(top.v)) components.push(component.sort());
      }
    }
  }
  return components
    .map((modules) => ({ modules, cycle: cycleIn(graph, new Set(modules), modules[0]) }))
    .sort((a, b) => a.modules[0].localeCompare(b.modules[0]));
}

/** A shortest cycle through `from` inside one strongly connected component (breadth-first). */
function cycleIn(graph: ImportGraph, component: ReadonlySet<string>, from: string): string[] {
  const parent = new Map<string, string>();
  const queue = [from];
  for (let head = 0; head < queue.length; head++) {
    const v = queue[head];
    for (const w of graph.get(v) ?? []) {
      if (!component.has(w)) continue;
      if (w === from) {
        const cycle = [v];
        while (cycle[0] !== from) cycle.unshift(parent.get(cycle[0])!);
        return [...cycle, from];
      }
      if (!parent.has(w)) {
        parent.set(w, v);
        queue.push(w);
      }
    }
  }
  throw new Error(`check-imports: ${from} is in a strongly connected component but on no cycle`);
}

/** Imports MAY_IMPORT forbids: server/ into client/ and back, wire/ into anything else, ... */
export function boundaryViolations(graph: ImportGraph): BoundaryViolation[] {
  const side = (f: string): string => f.split('/')[0];
  const out: BoundaryViolation[] = [];
  for (const [from, targets] of graph) {
    const allowed = MAY_IMPORT[side(from)];
    if (allowed === undefined) continue;
    for (const to of targets) if (!allowed.includes(side(to))) out.push({ from, to });
  }
  return out;
}

/** Every problem as a line of text; empty when the tree is clean. */
export function checkImports(graph: ImportGraph, enforceBoundary = ENFORCE_SERVER_CLIENT_BOUNDARY): string[] {
  const problems = findKnots(graph).map((k) => {
    const others = k.modules.filter((m) => !k.cycle.includes(m));
    return `import cycle: ${k.cycle.join(' -> ')}${others.length > 0 ? ` (the same knot also ties in ${others.join(', ')})` : ''}`;
  });
  if (enforceBoundary) for (const v of boundaryViolations(graph)) problems.push(`import boundary: ${v.from} imports ${v.to} (${v.from.split('/')[0]}/ may import only ${MAY_IMPORT[v.from.split('/')[0]].map((d) => `${d}/`).join(', ')})`);
  return problems;
}

function repoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

if (require.main === module) {
  const graph = graphOfTree(repoRoot());
  const problems = checkImports(graph);
  if (problems.length > 0) {
    for (const p of problems) console.error(p);
    process.exit(1);
  }
  const edges = [...graph.values()].reduce((n, t) => n + t.length, 0);
  console.log(`imports: ${graph.size} modules, ${edges} imports, no cycle${ENFORCE_SERVER_CLIENT_BOUNDARY ? ', no boundary crossing (wire <- server, client <- cli)' : ''}`);
}
