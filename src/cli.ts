// The CLI: argument parsing -> commands. Installed, it runs bundled through src/launcher.ts (dist/cli.js),
// which also carries the node flags; in development: `node --import tsx src/cli.ts`.
import { Command, Option } from 'commander';
import { z } from 'zod';
import { ConfigError, SyncError, describeError } from './errors.js';
import { setLogDefaults } from './log.js';
import { VERSION } from './package-root.js';

// Each command loads its own modules when it runs (dynamic imports below): start-up stays small, which
// matters for `sync --once` from cron or a timer, and `--help` loads almost nothing.

// zod's interpreter, not its generated parsers: an object schema's first parse otherwise compiles a parser with
// `new Function`, code V8's cache never holds, at every start (23 M of the ~640 M instructions of a no-op
// `sync --once`, callgrind). Set before any command loads, so before any schema is made.
z.config({ jitless: true });

/** Exit codes: documented in README and `--help`. */
export const EXIT = { ok: 0, failed: 1, config: 2, alreadyRunning: 3, incomplete: 4 } as const;

function exitCodeFor(err: unknown): number {
  if (err instanceof ConfigError) return EXIT.config;
  if (err instanceof SyncError && err.code === 'ALREADY_RUNNING') return EXIT.alreadyRunning;
  return EXIT.failed;
}

const program = new Command('cloudimg-sync')
  // A usage error (unknown command or option, a missing argument) is a configuration error: exit 2, as
  // documented; commander's own default is 1, the code of a failed cycle. Set before the subcommands,
  // which inherit it.
  .exitOverride((err) => {
    process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.config);
  })
  .description('Keep Glance (or a local directory, or an internal mirror) stocked with fresh, signature-verified Ubuntu cloud images.')
  .version(VERSION)
  .option('-c, --config <file>', 'YAML config (default: $CLOUDIMG_SYNC_CONFIG, else /etc/cloudimg-sync/config.yaml if present, else built-in defaults)')
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error']))
  .option('--pretty', 'human-readable log lines (default when stdout is a terminal)')
  .option('--no-pretty', 'JSON log lines even on a terminal')
  .addHelpText('after', `
Exit codes: 0 success, 1 a cycle step (or a check) failed (see the log), 2 bad configuration or usage
(invalid config, missing OpenStack credentials, unknown command or option), 3 another instance holds the
state lock, 4 (sync) nothing failed but a configured arch has no image in any recent serial upstream
(run result "incomplete"; see \`status\`); 130/143 interrupted by SIGINT/SIGTERM (plan).
Logs: one JSON object per line (pino) on stdout, on stderr for commands that print a document (plan,
status, history, check); event names in docs/events.md.`);

// Output is chosen once per process: pretty on a terminal (or --pretty), progress bars for `sync` on a terminal.
program.hook('preAction', async (_program, action) => {
  const pretty = (program.opts() as { pretty?: boolean }).pretty ?? process.stdout.isTTY === true;
  if (action.name() === 'sync' && process.stderr.isTTY) {
    const { ProgressBars } = await import('./daemon/progress-bars.js');
    const bars = new ProgressBars(process.stderr);
    setLogDefaults({ pretty, taps: [bars.observe], liveLine: bars });
  } else {
    setLogDefaults({ pretty });
  }
});

program
  .command('sync')
  .description('run one sync cycle: discover, download, verify, publish, retire')
  .option('--once', 'run a single cycle and exit (the only mode of `sync`; use `daemon` to run on a schedule)')
  .action(async () => {
    const { syncOnce } = await import('./commands/sync.js');
    const summary = await syncOnce(program.opts());
    if (summary.result === 'interrupted') {
      // A shutdown is not a failure: the partial download resumes next run.
      process.stderr.write('cloudimg-sync: sync interrupted by a signal; what was in flight resumes next run\n');
    } else if (summary.result === 'incomplete') {
      const missing = summary.incomplete.map((i) => `${i.release}/${i.arch} (${i.stream})`);
      process.stderr.write(`cloudimg-sync: sync incomplete: no image upstream for ${missing.join(', ')}\n`);
      process.exitCode = EXIT.incomplete;
    } else if (summary.result !== 'ok') {
      process.stderr.write(`cloudimg-sync: sync ${summary.result}: ${summary.errors[0] ?? 'stopped'}${summary.errors.length > 1 ? ` (+${summary.errors.length - 1} more, see log)` : ''}\n`);
      process.exitCode = EXIT.failed;
    }
  });

program
  .command('plan')
  .description('show what a cycle would download, publish and retire, without doing it (no lock: runs next to a daemon)')
  .option('--json', 'print {"items":[{action,channel,variant,release,version,arch,serial,url,sizeBytes,target,ref}],"sourceErrors":[...]} as JSON')
  .action(async (opts: { json?: boolean }) => {
    const { formatPlan, planCommand } = await import('./commands/plan.js');
    // Handlers of our own: as PID 1 (a container) the default action of SIGTERM/SIGINT is to ignore them.
    const abort = new AbortController();
    const onSignal = (signal: NodeJS.Signals) => {
      process.stderr.write(`cloudimg-sync: plan interrupted by ${signal}\n`);
      abort.abort();
      // Nothing to save: a plan writes nothing. Exit now rather than wait for requests in flight.
      process.exit(signal === 'SIGINT' ? 130 : 143);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const report = await planCommand(program.opts(), abort.signal);
    process.stdout.write(`${opts.json ? JSON.stringify(report, null, 2) : formatPlan(report)}\n`);
    if (report.sourceErrors.length > 0) process.exitCode = EXIT.failed;
  });

program
  .command('status')
  .description('list recorded images and their state per target')
  .option('--json', 'print {"images":[...]} as JSON')
  .action(async (opts: { json?: boolean }) => {
    const { formatStatus, statusCommand } = await import('./commands/status.js');
    const status = statusCommand(program.opts());
    process.stdout.write(`${opts.json ? JSON.stringify(status) : formatStatus(status)}\n`);
  });

program
  .command('daemon')
  .description('run sync cycles on the configured schedule until SIGTERM/SIGINT; SIGHUP reloads the config')
  .addHelpText('after', `
Serves /healthz and /metrics on health.listen:health.port (default 127.0.0.1:9465).
Exits 0 after a clean stop, 2 on bad configuration, 3 when another instance holds the state lock.`)
  .action(async () => {
    const { daemonCommand } = await import('./commands/daemon.js');
    await daemonCommand(program.opts());
    // Everything is closed; exit even if a cycle ignored the abort past shutdownGraceMs.
    process.exit(EXIT.ok);
  });

program
  .command('history')
  .description('list recent sync runs with their results and counts, newest first')
  .option('--json', 'print {"runs":[...]} as JSON')
  .option('--limit <n>', 'how many runs', (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new ConfigError(`--limit ${v} is not a positive whole number`, 'pass e.g. --limit 50');
    return n;
  }, 20)
  .action(async (opts: { json?: boolean; limit: number }) => {
    const { formatHistory, historyCommand } = await import('./commands/history.js');
    const history = historyCommand(program.opts(), { limit: opts.limit });
    process.stdout.write(`${opts.json ? JSON.stringify(history) : formatHistory(history)}\n`);
  });

program
  .command('check')
  .description('validate the config, then check state/cache directories, source reachability, keyring and every target')
  .option('--json', 'print {"ok":bool,"checks":[{name,ok,detail}]} as JSON')
  .addHelpText('after', `
Exits 0 when every check passes, 1 when one fails, 2 when the configuration is invalid (including a
release the source does not have and missing OpenStack credentials).`)
  .action(async (opts: { json?: boolean }) => {
    const { checkCommand, checkExitCode, formatCheck } = await import('./commands/check.js');
    const report = await checkCommand(program.opts());
    process.stdout.write(`${opts.json ? JSON.stringify(report) : formatCheck(report)}\n`);
    process.exitCode = checkExitCode(report);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`cloudimg-sync: ${describeError(err)}\n`);
  process.exitCode = exitCodeFor(err);
});
