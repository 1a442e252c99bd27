/**
 * Every event cloudimg-sync logs: its name and the levels it is logged at. The log is an interface (see
 * docs/events.md): code emits these names, in-process consumers (metrics, health, progress bars) subscribe to
 * the structured records through the logger's taps and switch on `EventName`, and
 * test/unit/events-doc.test.ts checks both directions: every name used in src/ is here, every name here is used
 * and documented, every documented name is here.
 */

export type EventLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export const EVENTS = {
  // Sync cycle
  'sync.run.started': ['info'],
  'sync.run.finished': ['info', 'warn', 'error'],
  'sync.run.error': ['error'],
  'sync.preflight.failed': ['error'],
  'sync.signal': ['warn'],
  'sync.sweep.removed': ['info'],
  'sync.sweep.failed': ['warn'],
  'sync.history.pruned': ['debug'],
  'sync.history.failed': ['warn'],
  // Source (cloud-images.ubuntu.com)
  'source.sums.verified': ['info'],
  'source.signature.key_expired': ['warn'],
  'source.rollback.refused': ['warn'],
  'source.streams.verified': ['info'],
  'source.release.failed': ['error'],
  'source.release.eol': ['warn'],
  'source.serial.pruned': ['warn'],
  'source.serial.incomplete': ['warn'],
  'source.serial.partial': ['info'],
  'source.arch.older': ['info'],
  'source.arch.missing': ['warn'],
  'source.root.unreadable': ['debug'],
  'source.signature.disabled': ['warn'],
  'http.retry': ['warn'],
  'http.proxy': ['info'],
  // Images: discover, download, verify
  'image.discovered': ['info'],
  'image.download.started': ['info'],
  'image.download.progress': ['info'],
  'http.download.resume': ['info'],
  'http.download.restart': ['info'],
  'http.download.done': ['debug'],
  'image.download.done': ['info'],
  'image.cache.unsaved': ['warn'],
  'image.download.aborted': ['info'],
  'image.download.failed': ['error'],
  'image.verify.ok': ['info'],
  'image.cache.invalid': ['warn'],
  'image.job.failed': ['error'],
  'image.verify.failed': ['error'],
  // Publish to targets
  'image.publish.started': ['info'],
  'image.publish.progress': ['info'],
  'image.publish.done': ['info'],
  'image.publish.aborted': ['info'],
  'image.publish.failed': ['error'],
  'image.publish.fallback': ['warn'],
  'glance.image.created': ['info'],
  'glance.upload.done': ['info'],
  'glance.stage.done': ['info'],
  'glance.image.verified': ['info'],
  'glance.image.leftover_deleted': ['warn'],
  'glance.image.discarded': ['warn', 'info'],
  'glance.image.discard_failed': ['error'],
  'glance.image.duplicates': ['warn'],
  'glance.image.reverified': ['warn'],
  'glance.image.not_qcow2': ['warn'],
  'glance.raw.converted': ['info'],
  'glance.image.converted_by_glance': ['info'],
  'glance.member.added': ['info'],
  'glance.member.pending': ['warn'],
  'glance.image.unrecognised': ['warn'],
  'glance.latest.moved': ['info'],
  'glance.auth.refused': ['info'],
  'keystone.auth.done': ['debug'],
  'keystone.v2.deprecated': ['warn'],
  // Reconcile
  'image.reconcile.missing': ['warn'],
  'image.reconcile.hidden': ['warn'],
  'image.reconcile.visible': ['warn'],
  'image.reconcile.failed': ['warn'],
  // Retention
  'image.retire.hidden': ['info'],
  'image.retire.removed': ['info'],
  'image.retire.failed': ['warn', 'error'],
  'image.retire.spared': ['debug'],
  'image.retire.skipped': ['warn'],
  // Daemon
  'daemon.started': ['info'],
  'daemon.health.listening': ['info'],
  'daemon.health.failed': ['error'],
  'daemon.cycle.triggered': ['debug'],
  'daemon.cycle.skipped': ['warn'],
  'daemon.cycle.failed': ['error'],
  'daemon.retry.scheduled': ['info'],
  'daemon.reloaded': ['info'],
  'daemon.reload.failed': ['error'],
  'daemon.stopping': ['info', 'warn'],
  'daemon.stop.timeout': ['error'],
  'daemon.stopped': ['info'],
  'daemon.cron': ['debug', 'warn'],
} as const satisfies Record<string, readonly EventLevel[]>;

export type EventName = keyof typeof EVENTS;

export const EVENT_NAMES = Object.keys(EVENTS) as EventName[];

export function isEventName(name: unknown): name is EventName {
  return typeof name === 'string' && Object.hasOwn(EVENTS, name);
}

/** One event as in-process consumers get it: the fields of the log line, with child-logger context merged in. */
export interface EventRecord {
  event: EventName;
  level: string;
  time: string;
  msg?: string;
  [key: string]: unknown;
}
