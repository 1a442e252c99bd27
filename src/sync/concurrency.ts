/**
 * How the images of a cycle share the process: up to `concurrency` at once, the images of one series
 * (channel, variant, release, arch) one after another in plan order, so a series' publications and its
 * latest pointer move in the order the plan chose; and each target limits its own publications at once.
 */
import type { SyncAction } from './plan.js';

/** The series an action belongs to: images of one series share a latest pointer and retention. */
export function seriesOf(action: SyncAction): string {
  const { channel, variant, release, arch } = action.image;
  return `${channel}/${variant}/${release}/${arch}`;
}

/** Actions grouped by series, each group in plan order, the groups in the order their first action was planned. */
export function seriesLanes(actions: readonly SyncAction[]): SyncAction[][] {
  const lanes = new Map<string, SyncAction[]>();
  for (const action of actions) {
    const key = seriesOf(action);
    const lane = lanes.get(key);
    if (lane) lane.push(action);
    else lanes.set(key, [action]);
  }
  return [...lanes.values()];
}

/**
 * Runs every lane's actions in order, at most `concurrency` lanes at a time (so at most that many images in
 * flight); a new action starts only while `shouldGo()` holds. `run` must not reject: a lane goes on after a
 * failed image.
 */
export async function runLanes(lanes: readonly SyncAction[][], concurrency: number, run: (action: SyncAction) => Promise<void>, shouldGo: () => boolean): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < lanes.length) {
      const lane = lanes[next++]!;
      for (const action of lane) {
        if (!shouldGo()) return;
        await run(action);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, lanes.length)) }, worker));
}

/** A counting semaphore: `limit` holders at once, the rest wait in order of arrival. */
export class Slots {
  private held = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly limit: number) {}

  /** Takes a slot when one is free now; true if taken. */
  tryTake(): boolean {
    if (this.held >= this.limit) return false;
    this.held++;
    return true;
  }

  /** Waits for a slot and takes it. */
  async take(): Promise<void> {
    if (this.tryTake()) return;
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** Gives a slot back, to the longest waiter if any. */
  give(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.held--;
  }
}
