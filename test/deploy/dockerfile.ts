/**
 * deploy/Dockerfile read as instructions, for the tests that follow it: comments dropped,
 * backslash continuations joined, each instruction with the stage it belongs to.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DEPLOY_DIR } from './support';

export interface Instruction {
  /** The stage's name (FROM ... AS NAME). */
  stage: string;
  /** FROM, RUN, COPY, ENV, ... in upper case. */
  op: string;
  /** The rest of the line. */
  args: string;
  line: number;
}

export function readDockerfile(file = path.join(DEPLOY_DIR, 'Dockerfile')): Instruction[] {
  const out: Instruction[] = [];
  let stage = '';
  let pending = '';
  let startLine = 0;
  fs.readFileSync(file, 'utf8').split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) return;
    if (pending !== '' && line.startsWith('#')) return; // a comment inside a continuation
    if (pending === '') startLine = i + 1;
    pending += (pending === '' ? '' : ' ') + line.replace(/\\$/, '').trim();
    if (line.endsWith('\\')) return;
    const m = /^(\w+)\s+(.*)$/.exec(pending);
    if (m === null) throw new Error(`Dockerfile line ${startLine}: ${pending}`);
    const op = m[1].toUpperCase();
    if (op === 'FROM') stage = /\bAS\s+(\S+)$/i.exec(m[2])?.[1] ?? m[2];
    out.push({ stage, op, args: m[2], line: startLine });
    pending = '';
  });
  return out;
}

/** The KEY=VALUE pairs of the ENV instructions of `stage` (unquoted values only: ours). */
export function envOfStage(instructions: Instruction[], stage: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of instructions.filter((x) => x.stage === stage && x.op === 'ENV')) {
    for (const pair of i.args.split(/\s+/)) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new Error(`Dockerfile line ${i.line}: ENV ${i.args} is not KEY=VALUE pairs`);
      env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return env;
}
