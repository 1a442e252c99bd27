#!/usr/bin/env node
import { Command, Option } from 'commander';
import { formatPlan, planCommand } from './commands/plan.js';
import { formatStatus, statusCommand } from './commands/status.js';
import { syncOnce } from './commands/sync.js';
import { ConfigError, SyncError, describeError } from './errors.js';
import { USER_AGENT } from './fetch/http-client.js';

/** Exit codes: documented in README and `--help`. */
export const EXIT = { ok: 0, failed: 1, config: 2, alreadyRunning: 3 } as const;

function exitCodeFor(err: unknown): number {
  if (err instanceof ConfigError) return EXIT.config;
  if (err instanceof SyncError && err.code === 'ALREADY_RUNNING') return EXIT.alreadyRunning;
  return EXIT.failed;
}

const program = new Command('cloudimg-sync')
  .description('Keep Glance (or a local directory) stocked with fresh, signature-verified Ubuntu cloud images.')
  .version(USER_AGENT.split(' ')[0]!.split('/')[1]!)
  .option('-c, --config <file>', 'YAML config (default: $CLOUDIMG_SYNC_CONFIG, else /etc/cloudimg-sync/config.yaml if present, else built-in defaults)')
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error']))
  .addHelpText('after', `
Exit codes: 0 success, 1 a cycle step failed (see the log), 2 bad configuration, 3 another instance holds the state lock.
Logs: one JSON object per line on stdout (pino); event names in docs/events.md.`);

program
  .command('sync')
  .description('run one sync cycle: discover, download, verify, publish, retire')
  .option('--once', 'run a single cycle and exit (the only mode of `sync`; use `daemon` to run on a schedule)')
  .action(async () => {
    const summary = await syncOnce(program.opts());
    if (summary.result !== 'ok') {
      process.stderr.write(`cloudimg-sync: sync ${summary.result}: ${summary.errors[0] ?? 'stopped'}${summary.errors.length > 1 ? ` (+${summary.errors.length - 1} more, see log)` : ''}\n`);
      process.exitCode = EXIT.failed;
    }
  });

program
  .command('plan')
  .description('show what a cycle would download, publish and retire, without doing it')
  .option('--json', 'print JSON')
  .action(async (opts: { json?: boolean }) => {
    const report = await planCommand(program.opts());
    process.stdout.write(`${opts.json ? JSON.stringify(report, null, 2) : formatPlan(report)}\n`);
    if (report.sourceErrors.length > 0) process.exitCode = EXIT.failed;
  });

program
  .command('status')
  .description('list recorded images and their state per target')
  .option('--json', 'print {"images":[...]} as JSON')
  .action((opts: { json?: boolean }) => {
    const status = statusCommand(program.opts());
    process.stdout.write(`${opts.json ? JSON.stringify(status) : formatStatus(status)}\n`);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`cloudimg-sync: ${describeError(err)}\n`);
  process.exitCode = exitCodeFor(err);
});
