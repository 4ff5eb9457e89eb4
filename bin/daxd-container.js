#!/usr/bin/env node
'use strict';
// Entry point of the container image (deploy/Dockerfile) and of its probes: `daxd serve`
// with flags from DAXD_* variables, and `probe http|grpc|grpc-ready` (cli/container.ts).
require('../dist/cli/container.js').containerMain(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err && err.stack ? err.stack : err); process.exitCode = 2; },
);
