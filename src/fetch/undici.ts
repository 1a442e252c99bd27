/**
 * The four parts of undici this program uses (Agent, Pool, ProxyAgent, request), taken from the files that
 * define them. undici's index loads everything it has (fetch, WebSocket, EventSource, cookies, mocks, cache
 * stores, interceptors), and its cookies module reads `globalThis.Headers`, which makes node load and run
 * its own bundled copy of undici too: together about 0.03-0.08 s of CPU at every start, for code no command
 * runs. These are undici's files, not its documented entry point: package-lock pins the version, a moved
 * file fails the build and the typecheck, and every test of the client runs through this module.
 */
import type { Dispatcher } from 'undici';
import api from 'undici/lib/api/index.js';
import undiciUtil from 'undici/lib/core/util.js';
import DispatcherBase from 'undici/lib/dispatcher/dispatcher.js';

export { default as Agent } from 'undici/lib/dispatcher/agent.js';
export { default as Pool } from 'undici/lib/dispatcher/pool.js';
export { default as ProxyAgent } from 'undici/lib/dispatcher/proxy-agent.js';

// What undici's index does to every dispatcher and what its own code relies on: ProxyAgent opens its CONNECT
// tunnel with `client.connect()`, which without this is not a function (every https origin through a proxy
// failed with "this[kClient].connect is not a function").
Object.assign(DispatcherBase.prototype, api);

export type RequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'path'> & { dispatcher: Dispatcher };

/** undici's `request(url, options)` with a dispatcher always given: the index's wrapper, without the global one. */
export function request(url: string | URL, options: RequestOptions): Promise<Dispatcher.ResponseData> {
  const { dispatcher, ...rest } = options;
  const parsed = undiciUtil.parseURL(url);
  return api.request.call(dispatcher, {
    ...rest,
    origin: parsed.origin,
    path: parsed.search ? `${parsed.pathname}${parsed.search}` : parsed.pathname,
    method: rest.method || (rest.body ? 'PUT' : 'GET'),
  });
}
