import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { boundaryViolations, checkImports, findCycles, findKnots, graphOf, graphOfTree, type ImportGraph } from '../tools/check-imports';

const graph = (edges: Record<string, string[]>): ImportGraph => new Map(Object.entries(edges));

describe('check-imports (the lint step that forbids import cycles)', function () {
  it('reports a two-module cycle made of type-only imports', function () {
    const g = graphOf(new Map([
      ['server/dax/pte.ts', "import type { Entry } from './address-space';\nexport interface Pte { entry: Entry }\n"],
      ['server/dax/address-space.ts', "import type { Pte } from './pte';\nexport interface Entry { ptes: Pte[] }\n"],
      ['server/dax/dax.ts', "import { x } from './pte';\nimport fs from 'node:fs';\n"],
    ]));
    assert.deepEqual(findCycles(g), [['server/dax/address-space.ts', 'server/dax/pte.ts', 'server/dax/address-space.ts']]);
    assert.deepEqual(checkImports(g), ['import cycle: server/dax/address-space.ts -> server/dax/pte.ts -> server/dax/address-space.ts']);
  });

  it('reports a three-module cycle once, with its path, and nothing for the acyclic rest', function () {
    const g = graph({
      'a.ts': ['b.ts'],
      'b.ts': ['c.ts', 'd.ts'],
      'c.ts': ['a.ts'],
      'd.ts': ['e.ts'],
      'e.ts': [],
    });
    assert.deepEqual(findCycles(g), [['a.ts', 'b.ts', 'c.ts', 'a.ts']]);
  });

  it('reports a module that imports itself, and one cycle per strongly connected component', function () {
    const g = graph({ 'x.ts': ['x.ts'], 'p.ts': ['q.ts'], 'q.ts': ['p.ts'], 'r.ts': ['p.ts'] });
    assert.deepEqual(findCycles(g), [['p.ts', 'q.ts', 'p.ts'], ['x.ts', 'x.ts']]);
  });

  it('names every module of a knot, not only those on the cycle it prints', function () {
    const g = graph({ 'a.ts': ['b.ts'], 'b.ts': ['a.ts', 'c.ts'], 'c.ts': ['a.ts'] });
    assert.deepEqual(findKnots(g), [{ modules: ['a.ts', 'b.ts', 'c.ts'], cycle: ['a.ts', 'b.ts', 'a.ts'] }]);
    assert.deepEqual(checkImports(g), ['import cycle: a.ts -> b.ts -> a.ts (the same knot also ties in c.ts)']);
  });

  it('a DAG (a diamond) has no cycle', function () {
    assert.deepEqual(findCycles(graph({ 'a.ts': ['b.ts', 'c.ts'], 'b.ts': ['d.ts'], 'c.ts': ['d.ts'], 'd.ts': [] })), []);
  });

  it('resolves export-from, import(), require(), index.ts and .js spellings; ignores packages', function () {
    const g = graphOf(new Map([
      ['client/index.ts', "export { a } from './a';\nexport * from './dir';\n"],
      ['client/a.ts', "const m = import('./b.js');\nimport pino from 'pino';\n"],
      ['client/b.ts', "const c = require('./dir/index');\n"],
      ['client/dir/index.ts', "import type { I } from '../index';\n"],
    ]));
    assert.deepEqual(g.get('client/index.ts'), ['client/a.ts', 'client/dir/index.ts']);
    assert.deepEqual(g.get('client/a.ts'), ['client/b.ts']);
    assert.deepEqual(g.get('client/b.ts'), ['client/dir/index.ts']);
    assert.deepEqual(findCycles(g), [['client/a.ts', 'client/b.ts', 'client/dir/index.ts', 'client/index.ts', 'client/a.ts']]);
  });

  it('reads a directory tree: a cycle written to disk is found, and the boundary rule names the crossing', function () {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'daxd-check-imports-'));
    try {
      const write = (rel: string, text: string): void => {
        fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
        fs.writeFileSync(path.join(root, rel), text);
      };
      write('server/fault.ts', "import type { DaxContext } from './dax-context';\n");
      write('server/dax-context.ts', "import { PinTable } from './pin';\n");
      write('server/pin.ts', "import { SigbusError } from './fault';\nimport { X } from '../client/generated/x';\n");
      write('client/generated/x.ts', 'export const X = 1;\n');
      write('test/t.ts', "import { X } from '../client/generated/x';\nimport { PinTable } from '../server/pin';\n");
      const g = graphOfTree(root);
      assert.equal(g.size, 5);
      assert.deepEqual(findCycles(g), [['server/dax-context.ts', 'server/pin.ts', 'server/fault.ts', 'server/dax-context.ts']]);
      assert.deepEqual(boundaryViolations(g), [{ from: 'server/pin.ts', to: 'client/generated/x.ts' }]);
      assert.equal(checkImports(g, false).length, 1, 'the boundary rule is off unless asked for');
      assert.deepEqual(checkImports(g, true).slice(1), ['import boundary: server/pin.ts imports client/generated/x.ts (server/ may import only server/, wire/)']);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('the boundary rule: server and client meet only in wire/, which imports neither; cli/ and test/ may import all', function () {
    const g = graphOf(new Map([
      ['wire/proto.ts', "import { X } from './generated/x';\n"],
      ['wire/generated/x.ts', 'export const X = 1;\n'],
      ['wire/limits.ts', "import { Y } from '../server/limits';\n"],
      ['wire/reasons.ts', "import { Z } from '../client/errors';\n"],
      ['server/limits.ts', "import { X } from '../wire/generated/x';\nexport const Y = 1;\n"],
      ['server/rpc/rpc-server.ts', "import { X } from '../../wire/proto';\nimport { main } from '../../cli/main';\n"],
      ['client/errors.ts', "import { X } from '../wire/proto';\nexport const Z = 1;\n"],
      ['client/loadtest/private-server.ts', "import { Y } from '../../server/limits';\n"],
      ['cli/main.ts', "import { Y } from '../server/limits';\nimport { Z } from '../client/errors';\nimport { X } from '../wire/proto';\nexport const main = 1;\n"],
      ['test/t.ts', "import { main } from '../cli/main';\nimport { Y } from '../server/limits';\nimport { Z } from '../client/errors';\n"],
    ]));
    assert.deepEqual(boundaryViolations(g), [
      { from: 'wire/limits.ts', to: 'server/limits.ts' },
      { from: 'wire/reasons.ts', to: 'client/errors.ts' },
      { from: 'server/rpc/rpc-server.ts', to: 'cli/main.ts' },
      { from: 'client/loadtest/private-server.ts', to: 'server/limits.ts' },
    ]);
    assert.ok(checkImports(g, true).includes('import boundary: wire/limits.ts imports server/limits.ts (wire/ may import only wire/)'));
  });

  it('the real tree has no cycle and keeps the boundary (what `npm run lint` checks)', function () {
    let root = __dirname;
    while (!fs.existsSync(path.join(root, 'package.json'))) root = path.dirname(root);
    const g = graphOfTree(root);
    assert.ok([...g.keys()].some((f) => f.startsWith('wire/')) && [...g.keys()].some((f) => f.startsWith('cli/')), 'wire/ and cli/ are scanned');
    assert.deepEqual(checkImports(g, true), []);
  });
});
