/**
 * Command-line parsing shared by the daxd subcommands: node:util parseArgs in strict mode
 * (an unknown option is a usage error), sizes with binary suffixes, and the usage error
 * every command reports the same way (exit code 2).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../client/loadtest/flags';

/** Where `daxd serve` listens and the client commands connect, unless told otherwise. */
export const DEFAULT_GRPC_ADDRESS = '127.0.0.1:7070';
/** Where `daxd serve` serves /metrics, the admin API and the dashboard unless told otherwise. */
export const DEFAULT_HTTP_ADDRESS = '127.0.0.1:7071';
/** Where `daxd serve` serves NBD unless told otherwise (the IANA NBD port); `--nbd off` disables it. */
export const DEFAULT_NBD_ADDRESS = '127.0.0.1:10809';
/** The embedded default volume of `daxd serve` without --volume: 1 GiB, sparse. */
export const DEFAULT_VOLUME_PATH = './data/daxd.vol';
export const DEFAULT_VOLUME_BYTES = 1024 * 1024 * 1024;

// One set of exit codes and one usage error for every daxd binary (daxd, daxd-load, daxd-fsx).
export { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from '../client/loadtest/flags';

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** Parse argv against options; `positionals` names the expected positionals (for errors). */
export function parse(argv: string[], options: Options, positionals: { min: number; max: number }): Parsed {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help !== true) {
    const n = parsed.positionals.length;
    if (n < positionals.min) throw new UsageError(`missing argument (${n} given, ${positionals.min} needed)`);
    if (n > positionals.max) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[positionals.max])}`);
  }
  return { values, positionals: parsed.positionals };
}

const SIZE_UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** "1073741824", "64M", "1GiB", "16m" -> bytes (binary units). */
export function parseSize(text: string, what: string): number {
  const m = /^(\d+)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  const bytes = m === null ? NaN : Number(m[1]) * SIZE_UNITS[m[2].toUpperCase()];
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`${what}: ${JSON.stringify(text)} is not a size (e.g. 1073741824, 64M, 1GiB)`);
  return bytes;
}

/** A non-negative integer option, e.g. a duration in ms. */
export function parseCount(text: string, what: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${what}: ${JSON.stringify(text)} is not a non-negative integer`);
  return n;
}

/** 1536 -> "1.5 KiB". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function stringOption(values: Parsed['values'], name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}
