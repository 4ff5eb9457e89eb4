/**
 * `daxd`: the command line. bin/daxd.js calls main(argv) and exits with its result.
 *
 *   daxd serve | mkfs | fsck          the server and the offline volume tools
 *   daxd token                        a bearer token and its hash for --auth
 *   daxd ls | stat | put | get | rm | truncate | df     client commands (SDK)
 *
 * Exit status: 0 success, 1 failure (fsck findings, a failed call), 2 usage error.
 */
import { DaxClientError } from '../client/errors';
import { BindPolicyError } from '../server/bind-policy';
import { DaxError } from '../server/errors';
import { HttpListenError } from '../server/http/http-server';
import { NbdListenError } from '../server/nbd/nbd-server';
import { ListenError } from '../server/rpc/rpc-server';
import { TlsConfigError } from '../server/tls/config';
import { EtcdFailedError, EtcdUnreachableError } from '../server/cluster/cluster';
import { clusterCommand } from './cluster-command';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, parse, UsageError } from './args';
import { clientCommands } from './client-commands';
import type { Command } from './command';
import { serveCommand } from './serve-command';
import { tokenCommand } from './token-command';
import { fsckCommand, mkfsCommand } from './volume-commands';

const COMMANDS: Command[] = [serveCommand, mkfsCommand, fsckCommand, tokenCommand, ...clientCommands, clusterCommand];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return `usage: daxd COMMAND [options]\n\ncommands:\n${lines.join('\n')}\n\n'daxd COMMAND --help' describes a command.\n`;
}

/** A failure worth one line, not a stack: coded errors of the engine or of a call. */
function describeFailure(err: unknown): string | null {
  if (err instanceof DaxError || err instanceof DaxClientError || err instanceof ListenError || err instanceof HttpListenError || err instanceof NbdListenError || err instanceof EtcdUnreachableError || err instanceof EtcdFailedError) return err.message;
  if (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && (err as NodeJS.ErrnoException).syscall) {
    return err.message; // ENOENT on a local file, and the like
  }
  return null;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(overview());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    process.stderr.write(`daxd: unknown command ${JSON.stringify(name)}\n\n${overview()}`);
    return EXIT_USAGE;
  }
  try {
    const parsed = parse(rest, command.options, command.positionals);
    if (parsed.values.help === true) {
      process.stdout.write(`${command.help}\n`);
      return EXIT_OK;
    }
    return await command.run(parsed);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`daxd ${name}: ${err.message}\n\n${command.help}\n`);
      return EXIT_USAGE;
    }
    // A refused start of `serve` (a remote bind without TLS and auth, a bad TLS file):
    // the arguments are at fault, so the usage exit code, with the one-line reason.
    if (err instanceof BindPolicyError || err instanceof TlsConfigError) {
      process.stderr.write(`daxd ${name}: ${err.message}\n`);
      return EXIT_USAGE;
    }
    const oneLine = describeFailure(err);
    if (oneLine === null) throw err; // a bug: bin/daxd.js prints the stack
    process.stderr.write(`daxd ${name}: ${oneLine}\n`);
    return EXIT_FAILURE;
  }
}
