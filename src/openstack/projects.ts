/**
 * Keystone projects by name or id, for sharing images (`members:` of a glance target). Keystone v3 only.
 *
 * An id is checked with GET /v3/projects/{id}; a name is looked up with GET /v3/projects?name= (admins and
 * domain readers may list projects) and, when that is refused, among the projects the caller has a role on
 * (GET /v3/auth/projects). An id Keystone will not show the caller (403) is taken as given: Glance accepts any
 * project id as a member. Anything else that does not resolve to exactly one project is an error.
 */
import type { Dispatcher } from 'undici';
import { z } from 'zod';
import { OpenStackError, cleanErrorMessage } from './errors.js';
import { readJson } from './http.js';
import type { KeystoneSession } from './keystone.js';

const projectSchema = z.looseObject({ id: z.string(), name: z.string(), domain_id: z.string().optional() });
const projectListSchema = z.looseObject({ projects: z.array(projectSchema) });
const projectDocSchema = z.looseObject({ project: projectSchema });

/** Keystone project ids are 32 hex digits (a UUID without dashes). */
const PROJECT_ID = /^[0-9a-f]{32}$/i;

export class ProjectUnresolvedError extends OpenStackError {
  constructor(ref: string, detail: string) {
    super(
      'PROJECT_UNRESOLVED',
      `the member project ${JSON.stringify(ref)} cannot be resolved: ${detail}`,
      "give the project's id (openstack project show NAME -f value -c id) or a name these credentials can see",
      { service: 'keystone' },
    );
  }
}

/** The ids of `refs` (project names or ids), in order, without duplicates. */
export async function resolveProjectIds(session: KeystoneSession, refs: readonly string[], signal?: AbortSignal): Promise<string[]> {
  const ids: string[] = [];
  for (const ref of refs) {
    const id = PROJECT_ID.test(ref) ? await checkProjectId(session, ref, signal) : await findProjectByName(session, ref, signal);
    if (!ids.includes(id)) ids.push(id);
  }
  return ids;
}

async function checkProjectId(session: KeystoneSession, id: string, signal?: AbortSignal): Promise<string> {
  const res = await keystoneGet(session, `/projects/${id}`, signal);
  if (res.status !== 200) await res.body.dump();
  if (res.status === 403) return id;
  if (res.status === 404) throw new ProjectUnresolvedError(id, 'Keystone has no project with that id');
  return (await readJson(res.body, projectDocSchema, { service: 'keystone', method: 'GET', url: res.url })).project.id;
}

async function findProjectByName(session: KeystoneSession, name: string, signal?: AbortSignal): Promise<string> {
  let res = await keystoneGet(session, `/projects?name=${encodeURIComponent(name)}`, signal);
  if (res.status === 403) {
    await res.body.dump();
    res = await keystoneGet(session, '/auth/projects', signal);
  }
  if (res.status !== 200) await res.body.dump();
  if (res.status !== 200) throw new ProjectUnresolvedError(name, `Keystone answered ${res.status}`);
  const { projects } = await readJson(res.body, projectListSchema, { service: 'keystone', method: 'GET', url: res.url });
  const matching = projects.filter((p) => p.name === name);
  if (matching.length === 1) return matching[0]!.id;
  throw new ProjectUnresolvedError(name, matching.length === 0
    ? 'no project of that name is visible to these credentials'
    : `${matching.length} projects have that name (in different domains)`);
}

interface KeystoneAnswer {
  status: number;
  url: string;
  body: Dispatcher.ResponseData['body'];
}

/** GET on Keystone v3 with the session's token; 200, 403 and 404 are answers, anything else an error. */
async function keystoneGet(session: KeystoneSession, path: string, signal?: AbortSignal): Promise<KeystoneAnswer> {
  if (session.settings.identityVersion === 'v2.0') {
    throw new OpenStackError('KEYSTONE_V2_MEMBERS', 'resolving member projects needs Keystone v3', 'use an identity v3 auth URL', { service: 'keystone' });
  }
  const url = `${session.settings.authUrl}${path}`;
  const res = await session.authorizedGet(url, { signal });
  if (res.statusCode === 200 || res.statusCode === 403 || res.statusCode === 404) return { status: res.statusCode, url, body: res.body };
  const detail = cleanErrorMessage(await res.body.text().catch(() => ''));
  throw new OpenStackError(
    `KEYSTONE_HTTP_${res.statusCode}`,
    `GET ${url} answered ${res.statusCode}${detail ? `: ${detail}` : ''} while resolving member projects`,
    'Keystone is failing; retried next cycle',
    { service: 'keystone', method: 'GET', url, status: res.statusCode },
    { retryable: res.statusCode >= 500 || res.statusCode === 429 },
  );
}
