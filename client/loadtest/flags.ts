/**
 * The flag tables of daxd-load and daxd-fsx: each flag is declared once, with its value
 * name, default and help text, and --help is generated from the table, so every flag is
 * documented by construction. Parsing is node:util parseArgs in strict mode (an unknown
 * flag is a usage error, exit 2).
 */
import { parseArgs } from 'node:util';

export interface FlagSpec {
  name: string;
  /** Value placeholder for --help; absent for boolean flags. */
  value?: string;
  short?: string;
  /** Shown as "(default: ...)". */
  default?: string;
  help: string;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type FlagValues = Record<string, string | boolean | undefined>;

export function parseFlags(argv: string[], specs: readonly FlagSpec[]): FlagValues {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const s of specs) options[s.name] = s.short ? { type: s.value ? 'string' : 'boolean', short: s.short } : { type: s.value ? 'string' : 'boolean' };
  try {
    const parsed = parseArgs({ args: argv, options, allowPositionals: false, strict: true });
    return parsed.values as FlagValues;
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

/** The --help text: usage line, intro, then one entry per flag. */
export function helpText(usage: string, intro: string, specs: readonly FlagSpec[], outro = ''): string {
  const heads = specs.map((s) => `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.value ? ` ${s.value}` : ''}`);
  const width = Math.min(34, Math.max(...heads.map((h) => h.length)));
  const lines = specs.map((s, i) => {
    const text = `${s.help}${s.default !== undefined ? ` (default: ${s.default})` : ''}`;
    const head = heads[i];
    const pad = head.length > width ? `\n  ${' '.repeat(width + 2)}` : ' '.repeat(width + 2 - head.length);
    return `  ${head}${pad}${wrap(text, 100 - width - 4).join(`\n  ${' '.repeat(width + 2)}`)}`;
  });
  return `usage: ${usage}\n\n${intro}\n\noptions:\n${lines.join('\n')}\n${outro ? `\n${outro}\n` : ''}`;
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line.length > 0 && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line.length > 0 ? `${line} ${word}` : word;
  }
  if (line.length > 0) out.push(line);
  return out;
}

// ---- values ------------------------------------------------------------------------

const SIZE_UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** "4096", "4k", "1M", "64MiB" -> bytes (binary units). */
export function sizeValue(text: string, flag: string): number {
  const m = /^(\d+)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  const bytes = m === null ? NaN : Number(m[1]) * SIZE_UNITS[m[2].toUpperCase()];
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`--${flag}: ${JSON.stringify(text)} is not a size (e.g. 4096, 4k, 1M, 64MiB)`);
  return bytes;
}

/** "500ms", "10s", "2m", "10" (seconds) -> ms. */
export function durationValue(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(text.trim());
  const scale: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const ms = m === null ? NaN : Math.round(Number(m[1]) * scale[m[2] ?? 's']);
  if (!Number.isSafeInteger(ms)) throw new UsageError(`--${flag}: ${JSON.stringify(text)} is not a duration (e.g. 10s, 500ms, 2m)`);
  return ms;
}

/** An integer in [min, max]. */
export function intValue(text: string, flag: string, min: number, max: number): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${flag}: ${JSON.stringify(text)} is not an integer in [${min}, ${max}]`);
  return n;
}

/** HOST:PORT (a name, an IPv4 address or a bracketed IPv6 address; port 1..65535). */
export function addressValue(text: string, flag: string): string {
  const m = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/.exec(text.trim());
  if (m === null || Number(m[2]) === 0 || Number(m[2]) > 65535) throw new UsageError(`--${flag}: ${JSON.stringify(text)} is not HOST:PORT`);
  return text.trim();
}

export function str(values: FlagValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}
