/** The shape of a daxd subcommand: its help, its options, and what it does. */
import type { Options, Parsed } from './args';

export interface Command {
  readonly name: string;
  /** One line for `daxd --help`. */
  readonly summary: string;
  /** The full `daxd NAME --help` text: usage line, then options. */
  readonly help: string;
  readonly options: Options;
  readonly positionals: { min: number; max: number };
  /** Returns the exit code. Throws UsageError for bad arguments. */
  run(parsed: Parsed): Promise<number>;
}
