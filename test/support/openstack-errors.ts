import assert from 'node:assert/strict';
import { OpenStackError } from '../../src/openstack/errors.js';

/** For assert.rejects/throws: an OpenStackError with this code, whose one-line text mentions `mentions`. */
export function isOpenStackError(code: string, mentions?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof OpenStackError, `expected an OpenStackError, got ${String(err)}`);
    assert.equal(err.code, code, err.oneLine());
    if (mentions) assert.match(err.oneLine(), mentions);
    return true;
  };
}
