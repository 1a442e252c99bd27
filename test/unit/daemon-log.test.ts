import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLogHandle, type LiveLine, type LogRecord } from '../../src/log.js';

function capture() {
  const lines: string[] = [];
  return { lines, destination: { write: (s: string) => { lines.push(s); } } };
}

describe('log taps: consumers get the catalogued events in process', () => {
  test('taps get catalogued events with the child logger context, not free-form lines', () => {
    const seen: Array<Record<string, unknown>> = [];
    const { log } = createLogHandle({ destination: capture().destination, taps: [(r) => seen.push(r)] });
    log.info('a free-form line');
    log.child({ release: 'noble', target: 't' }).info({ event: 'image.publish.done', imageId: 'x' }, 'published');
    log.info({ event: 'not.an.event' }, 'unknown');
    assert.deepEqual(seen.map((r) => [r.event, r.release, r.target, r.imageId, r.msg]), [['image.publish.done', 'noble', 't', 'x', 'published']]);
  });

  test('taps see every info event even when the output level is higher; the output keeps its level', () => {
    const out = capture();
    const seen: LogRecord[] = [];
    const { log } = createLogHandle({ level: 'warn', destination: out.destination, taps: [(r) => seen.push(r)] });
    log.info({ event: 'image.download.done', bytes: 5 }, 'done');
    log.warn({ event: 'http.retry' }, 'retry');
    log.debug({ event: 'image.retire.spared' }, 'spared');
    assert.deepEqual(seen.map((r) => r.event), ['image.download.done', 'http.retry']);
    assert.equal(seen[0]!.bytes, 5);
    assert.equal(out.lines.length, 1);
    assert.equal((JSON.parse(out.lines[0]!) as LogRecord).event, 'http.retry');
  });

  test('setLevel changes what is written, not what taps see', () => {
    const out = capture();
    const seen: string[] = [];
    const handle = createLogHandle({ level: 'info', destination: out.destination, taps: [(r) => seen.push(r.msg ?? '')] });
    handle.setLevel('error');
    handle.log.info({ event: 'image.download.done' }, 'quiet');
    handle.setLevel('debug');
    handle.log.debug({ event: 'image.retire.spared' }, 'loud');
    assert.deepEqual(out.lines.map((l) => (JSON.parse(l) as LogRecord).msg), ['loud']);
    assert.deepEqual(seen, ['quiet', 'loud']);
  });

  test('secrets are redacted before taps or the output see them', () => {
    const out = capture();
    const seen: LogRecord[] = [];
    const { log } = createLogHandle({ destination: out.destination, taps: [(r) => seen.push(r)] });
    log.info({ event: 'keystone.auth.done', auth: { password: 'hunter2' } }, 'authenticated');
    assert.doesNotMatch(out.lines.join(''), /hunter2/);
    assert.deepEqual(seen[0]!.auth, { password: '[redacted]' });
  });

  test('a throwing tap does not break logging', () => {
    const out = capture();
    const { log } = createLogHandle({ destination: out.destination, taps: [() => { throw new Error('bug'); }] });
    log.info('still written');
    assert.equal(out.lines.length, 1);
  });

  test('pretty output is one human line per event, with the event name', () => {
    const out = capture();
    const { log } = createLogHandle({ destination: out.destination, pretty: true });
    log.info({ event: 'sync.run.started', runId: 7 }, 'sync run started');
    assert.equal(out.lines.length, 1);
    assert.match(out.lines[0]!, /INFO.*sync run started.*"event":"sync.run.started".*"runId":7/);
    assert.doesNotMatch(out.lines[0]!, /^\{/);
  });

  test('a live line is cleared before each printed line and redrawn after; lines it shows are not printed', () => {
    const calls: string[] = [];
    const out = { write: (s: string) => { calls.push(`out:${(JSON.parse(s) as LogRecord).event}`); } };
    const live: LiveLine = {
      clear: () => calls.push('clear'),
      redraw: () => calls.push('redraw'),
      shows: (r) => r.event === 'image.download.progress',
    };
    const { log } = createLogHandle({ destination: out, liveLine: live, taps: [(r) => calls.push(`tap:${r.event}`)] });
    log.info({ event: 'image.download.progress' }, 'p');
    log.info({ event: 'image.download.done' }, 'd');
    assert.deepEqual(calls, [
      'tap:image.download.progress', 'redraw',
      'clear', 'out:image.download.done', 'tap:image.download.done', 'redraw',
    ]);
  });
});
