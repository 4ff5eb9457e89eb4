/**
 * Lint step: every coded error is a class in server/errors.ts, next to the reason table.
 * Fails on `new DaxError(...)` outside server/errors.ts (a bare reason string, which
 * skips the class that names the case and words its message) and on a class that
 * extends DaxError outside server/errors.ts. Parsed with the TypeScript compiler, so
 * comments and strings do not count.
 * Exit 1 listing every offence as file:line.
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { sourceFiles } from './check-imports';

/** The trees scanned (relative to the repository root; missing ones are skipped). */
export const SCANNED_DIRS = ['server', 'client', 'wire', 'test'] as const;
/** The one home of DaxError and its subclasses. */
export const ERRORS_MODULE = 'server/errors.ts';
/**
 * Files that may build a DaxError from a reason code: the test that maps every reason of
 * the table to its status cannot name a class per reason.
 */
export const NEW_DAX_ERROR_ALLOWED: readonly string[] = ['test/unit/rpc-status.test.ts'];

export interface ErrorClassOffence {
  file: string;
  line: number;
  what: 'new DaxError' | 'extends DaxError';
}

/** The offences in one module's source text (`file` is repository-relative, with '/'). */
export function offencesIn(file: string, text: string): ErrorClassOffence[] {
  if (file === ERRORS_MODULE) return [];
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const out: ErrorClassOffence[] = [];
  const lineOf = (n: ts.Node) => sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
  const isDaxError = (e: ts.Expression) => ts.isIdentifier(e) && e.text === 'DaxError';
  const visit = (n: ts.Node): void => {
    if (ts.isNewExpression(n) && isDaxError(n.expression) && !NEW_DAX_ERROR_ALLOWED.includes(file)) {
      out.push({ file, line: lineOf(n), what: 'new DaxError' });
    }
    if ((ts.isClassDeclaration(n) || ts.isClassExpression(n)) && n.heritageClauses) {
      for (const h of n.heritageClauses) {
        if (h.token === ts.SyntaxKind.ExtendsKeyword && h.types.some((t) => isDaxError(t.expression))) {
          out.push({ file, line: lineOf(n), what: 'extends DaxError' });
        }
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}


/** Every offence in the repository at `root`. */
export function checkErrorClasses(root: string): ErrorClassOffence[] {
  return SCANNED_DIRS.flatMap((d) => sourceFiles(root, d, 'check-error-classes')).flatMap((f) => offencesIn(f, fs.readFileSync(path.join(root, f), 'utf8')));
}

function repoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

if (require.main === module) {
  const offences = checkErrorClasses(repoRoot());
  if (offences.length > 0) {
    for (const o of offences) console.error(`${o.file}:${o.line}: ${o.what} outside ${ERRORS_MODULE}: add or use a class there`);
    process.exit(1);
  }
  console.log(`check-error-classes: every DaxError class lives in ${ERRORS_MODULE}`);
}
