/**
 * `/healthz`: healthy while the last finished cycle succeeded, not too long ago, and no cycle has been running
 * for too long (one held by a stalled peer makes every later tick skip). Fed by sync.run.started/finished.
 */
import type { EventRecord } from '../events.js';
import type { RunRecord } from '../state/store.js';

export interface FinishedCycle {
  runId: number;
  result: 'ok' | 'failed';
  finishedAt: string;
  error?: string;
}

export interface HealthReport {
  healthy: boolean;
  /**
   * ok: fresh success; starting: nothing finished yet since a recent start; failing: last cycle failed; stale:
   * success too old; stuck: the cycle in flight has run longer than maxCycleHours.
   */
  status: 'ok' | 'starting' | 'failing' | 'stale' | 'stuck';
  reason: string;
  lastCycle?: FinishedCycle;
  lastSuccessAt?: string;
  cycleRunning: boolean;
  /** When the cycle in flight started. */
  cycleStartedAt?: string;
  maxAgeHours: number;
}

export interface HealthInput {
  lastCycle?: FinishedCycle;
  lastSuccessAt?: string;
  cycleRunning: boolean;
  /** When the cycle in flight started (with cycleRunning). */
  cycleStartedAt?: string;
  startedAtMs: number;
  nowMs: number;
  maxAgeHours: number;
  /** Longest a cycle may run before it counts as stuck; unbounded when absent. */
  maxCycleHours?: number;
}

/** Pure: the verdict from what is known. Aborted and interrupted cycles (shutdowns, crashes) do not count. */
export function evaluateHealth(input: HealthInput): HealthReport {
  const { lastCycle, lastSuccessAt, nowMs, maxAgeHours } = input;
  const maxAgeMs = maxAgeHours * 3_600_000;
  const base = { lastCycle, lastSuccessAt, cycleRunning: input.cycleRunning, cycleStartedAt: input.cycleStartedAt, maxAgeHours };
  if (input.cycleRunning && input.cycleStartedAt !== undefined && input.maxCycleHours !== undefined
    && nowMs - Date.parse(input.cycleStartedAt) > input.maxCycleHours * 3_600_000) {
    return { ...base, healthy: false, status: 'stuck', reason: `the cycle running since ${input.cycleStartedAt} has taken more than ${input.maxCycleHours} h` };
  }
  if (lastCycle?.result === 'failed') {
    return { ...base, healthy: false, status: 'failing', reason: `last cycle (run ${lastCycle.runId}) failed at ${lastCycle.finishedAt}: ${lastCycle.error ?? 'see the log'}` };
  }
  if (lastSuccessAt !== undefined) {
    const ageMs = nowMs - Date.parse(lastSuccessAt);
    if (ageMs <= maxAgeMs) return { ...base, healthy: true, status: 'ok', reason: `last cycle succeeded at ${lastSuccessAt}` };
    return { ...base, healthy: false, status: 'stale', reason: `last successful cycle finished at ${lastSuccessAt}, more than ${maxAgeHours} h ago` };
  }
  if (nowMs - input.startedAtMs <= maxAgeMs) {
    return { ...base, healthy: true, status: 'starting', reason: `no cycle has finished yet; started at ${new Date(input.startedAtMs).toISOString()}` };
  }
  return { ...base, healthy: false, status: 'stale', reason: `no cycle has succeeded in the ${maxAgeHours} h since the start` };
}

export class HealthTracker {
  private lastCycle: FinishedCycle | undefined;
  private lastSuccessAt: string | undefined;
  private cycleRunning = false;
  private cycleStartedAt: string | undefined;

  constructor(public maxAgeHours: number, private readonly startedAtMs = Date.now(), public maxCycleHours?: number) {}

  /** What earlier processes recorded, newest first (StateStore.listRuns). */
  seedFromRuns(runs: readonly RunRecord[]): void {
    const last = runs.find((r) => r.result === 'ok' || r.result === 'incomplete' || r.result === 'failed');
    if (last?.finishedAt) {
      this.lastCycle = { runId: last.id, result: last.result === 'failed' ? 'failed' : 'ok', finishedAt: last.finishedAt, error: last.error ?? undefined };
    }
    this.lastSuccessAt = runs.find((r) => r.result === 'ok' || r.result === 'incomplete')?.finishedAt ?? undefined;
  }

  /** The log tap. */
  readonly observe = (record: EventRecord): void => {
    if (record.event === 'sync.run.started') {
      this.cycleRunning = true;
      this.cycleStartedAt = record.time;
    }
    if (record.event === 'daemon.cycle.failed') {
      // The cycle could not even record itself (state unwritable): as failed as it gets.
      this.cycleRunning = false;
      this.lastCycle = { runId: 0, result: 'failed', finishedAt: record.time, error: typeof record.err === 'string' ? record.err : undefined };
      return;
    }
    if (record.event !== 'sync.run.finished') return;
    this.cycleRunning = false;
    // An `incomplete` cycle (an arch missing upstream) did its work: healthy; the metrics show what is missing.
    if (record.result !== 'ok' && record.result !== 'incomplete' && record.result !== 'failed') return;
    const errors = Array.isArray(record.errors) ? record.errors : [];
    const result = record.result === 'failed' ? 'failed' : 'ok';
    this.lastCycle = {
      runId: typeof record.runId === 'number' ? record.runId : 0,
      result,
      finishedAt: record.time,
      error: typeof errors[0] === 'string' ? errors[0] : undefined,
    };
    if (result === 'ok') this.lastSuccessAt = record.time;
  };

  report(nowMs = Date.now()): HealthReport {
    return evaluateHealth({
      lastCycle: this.lastCycle, lastSuccessAt: this.lastSuccessAt, cycleRunning: this.cycleRunning,
      cycleStartedAt: this.cycleRunning ? this.cycleStartedAt : undefined,
      startedAtMs: this.startedAtMs, nowMs, maxAgeHours: this.maxAgeHours, maxCycleHours: this.maxCycleHours,
    });
  }
}
