#!/usr/bin/env node
// Process entry: the first argument picks what runs; serving lives in serve.ts.

import { helpText } from './config/config.js';
import { VERSION } from './lib/version.js';
import { serve } from './serve.js';

const [command] = process.argv.slice(2);
switch (command) {
  case undefined:
    await serve(process.env);
    break;
  case '--help':
  case '-h':
    process.stdout.write(`${helpText()}\n`);
    break;
  case 'policy':
    process.exitCode = (await import('./mcp/policy/cli.js')).runPolicyCommand(process.argv.slice(3));
    break;
  case '--version':
    process.stdout.write(`${VERSION}\n`);
    break;
  default:
    process.stderr.write(`mcp-auth-sidecar: unknown argument ${JSON.stringify(command)}; try --help or --version\n`);
    process.exitCode = 2;
}
