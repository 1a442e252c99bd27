import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import type { UpstreamImage } from '../../src/image.js';
import { Slots, runLanes, seriesLanes } from '../../src/sync/concurrency.js';
import type { SyncAction } from '../../src/sync/plan.js';

function action(release: string, arch: string, serial: string): SyncAction {
  const image = {
    channel: 'release', variant: 'server', release, version: '24.04', arch, serial, fileName: `${release}-${arch}.img`, url: 'http://x/', sha256: 'a'.repeat(64), signed: true,
  } as UpstreamImage;
  return { image, key: `release/server/${release}/${arch}/${serial}`, cached: false, download: true, publishTo: ['t'], adopt: [] };
}

describe('images in parallel: lanes per series, at most N in flight', () => {
  test('actions of one release/arch share a lane in plan order; lanes come in the order first planned', () => {
    const plan = [action('noble', 'amd64', '1'), action('jammy', 'amd64', '1'), action('noble', 'amd64', '2'), action('noble', 'arm64', '1')];
    assert.deepEqual(seriesLanes(plan).map((lane) => lane.map((a) => a.key)), [
      ['release/server/noble/amd64/1', 'release/server/noble/amd64/2'],
      ['release/server/jammy/amd64/1'],
      ['release/server/noble/arm64/1'],
    ]);
  });

  for (const concurrency of [1, 2, 4]) {
    test(`concurrency ${concurrency}: never more images at once, a series never overlaps itself, each once`, async () => {
      const plan = ['a', 'b', 'c', 'd', 'e'].flatMap((release) => [action(release, 'amd64', '1'), action(release, 'amd64', '2')]);
      let inFlight = 0;
      let most = 0;
      const running = new Set<string>();
      const finished: string[] = [];
      await runLanes(seriesLanes(plan), concurrency, async (a) => {
        const series = a.key.split('/').slice(0, 4).join('/');
        assert.ok(!running.has(series), `${series} overlapped itself`);
        running.add(series);
        most = Math.max(most, ++inFlight);
        await sleep(5);
        inFlight--;
        running.delete(series);
        finished.push(a.key);
      }, () => true);
      assert.equal(most, concurrency);
      assert.equal(finished.length, plan.length);
      for (const release of ['a', 'b', 'c', 'd', 'e']) {
        assert.ok(finished.indexOf(`release/server/${release}/amd64/1`) < finished.indexOf(`release/server/${release}/amd64/2`), 'plan order within a series');
      }
    });
  }

  test('no new image starts once told to stop (an abort); those in flight finish', async () => {
    const plan = ['a', 'b', 'c', 'd'].map((r) => action(r, 'amd64', '1'));
    const started: string[] = [];
    let go = true;
    await runLanes(seriesLanes(plan), 2, async (a) => {
      started.push(a.key);
      go = false;
      await sleep(2);
    }, () => go);
    assert.equal(started.length, 1);
  });

  test('slots: a target with a limit of 1 lets one holder in at a time, waiters in order of arrival', async () => {
    const slots = new Slots(1);
    assert.equal(slots.tryTake(), true);
    assert.equal(slots.tryTake(), false, 'taken: a streaming image then publishes the verified file later');
    const order: string[] = [];
    const a = slots.take().then(() => order.push('a'));
    const b = slots.take().then(() => order.push('b'));
    slots.give();
    await a;
    assert.deepEqual(order, ['a']);
    slots.give();
    await b;
    assert.deepEqual(order, ['a', 'b']);
    slots.give();
    assert.equal(slots.tryTake(), true, 'free again');
  });
});
