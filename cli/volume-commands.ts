/** `daxd mkfs` and `daxd fsck`: the offline volume tools (they take the volume lock too). */
import fs from 'node:fs';
import { fsck, formatReport, type FsckReport } from '../server/fsck/fsck';
import { MmapStorage } from '../server/media/mmap-storage';
import { createVolume, reformatVolume } from '../server/volume';
import { EXIT_FAILURE, EXIT_OK, formatBytes, parseSize, stringOption, UsageError, type Parsed } from './args';
import type { Command } from './command';

async function mkfsRun(parsed: Parsed): Promise<number> {
  const [volumePath] = parsed.positionals;
  const sizeOption = stringOption(parsed.values, 'size');
  if (fs.existsSync(volumePath)) {
    if (parsed.values.force !== true) throw new UsageError(`${volumePath} exists; pass --force to reformat it (its files are lost)`);
    if (sizeOption !== undefined) throw new UsageError('--size cannot resize an existing volume file');
    await reformatVolume(volumePath);
  } else {
    if (sizeOption === undefined) throw new UsageError('--size is required to create a volume');
    await createVolume(volumePath, parseSize(sizeOption, '--size'));
  }
  process.stdout.write(`formatted ${volumePath} (${formatBytes(fs.statSync(volumePath).size)})\n`);
  return EXIT_OK;
}

export const mkfsCommand: Command = {
  name: 'mkfs',
  summary: 'create and format a volume file',
  help: `usage: daxd mkfs PATH --size N [--force]

Creates PATH as a sparse volume of N bytes (e.g. 64M, 1G) and formats it.
  --size N   volume size (16 MiB .. 1 TiB, a multiple of 4096)
  --force    reformat an existing volume file (its files are lost)`,
  options: { size: { type: 'string' }, force: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  run: mkfsRun,
};

async function fsckRun(parsed: Parsed): Promise<number> {
  const [volumePath] = parsed.positionals;
  const storage = MmapStorage.open(volumePath);
  let report: FsckReport;
  try {
    report = await fsck(storage);
  } finally {
    storage.close();
  }
  if (parsed.values.json === true) {
    process.stdout.write(`${JSON.stringify({ volume: volumePath, ...report })}\n`);
  } else {
    process.stdout.write(`${formatReport(report)}\n`);
  }
  return report.clean ? EXIT_OK : EXIT_FAILURE;
}

export const fsckCommand: Command = {
  name: 'fsck',
  summary: 'check a volume (exit 0 clean, 1 with findings)',
  help: `usage: daxd fsck PATH [--json]

Checks the volume offline (it must not be served: the lock is taken).
Exit status 0 when clean, 1 with findings.
  --json   print {"volume", "clean", "findings"} as one JSON line`,
  options: { json: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  run: fsckRun,
};
