/**
 * Runs a daxd CLI from a given build: `node daxd-launch.js /path/to/dist/cli/main.js serve ...`.
 * The bench starts the current build and an older one (--before DIR) the same way, so
 * both get the same node flags (e.g. --cpu-prof) and arguments.
 */
interface CliModule {
  main(argv: string[]): Promise<number>;
}

const [mainJs, ...args] = process.argv.slice(2);
if (!mainJs) {
  process.stderr.write('usage: daxd-launch DIST/cli/main.js ARGS...\n');
  process.exitCode = 2;
} else {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cli = require(mainJs) as CliModule;
  cli.main(args).then(
    (code) => { process.exitCode = code; },
    (err: unknown) => { console.error(err); process.exitCode = 2; },
  );
}
