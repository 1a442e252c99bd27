import { z } from 'zod';
import { OpenStackError, cleanErrorMessage } from './errors.js';
import { readJson } from './http.js';
import type { KeystoneSession } from './keystone.js';

const v3TokenProjectSchema = z.looseObject({
  token: z.looseObject({ project: z.looseObject({ id: z.string(), name: z.string().optional() }).optional() }),
});
const v2TenantsSchema = z.looseObject({ tenants: z.array(z.looseObject({ id: z.string(), name: z.string() })) });

/**
 * The id of the project the session's token is scoped to: the `owner` Glance gives the images we create,
 * so we never mistake another project's image (say a public one with our properties) for ours.
 * v3 asks Keystone about the token itself (a token may always validate itself); v2.0 lists the tenants.
 */
export async function tokenProjectId(session: KeystoneSession, signal?: AbortSignal): Promise<string> {
  const { settings } = session;
  if (settings.scope?.projectId) return settings.scope.projectId;
  const v2 = settings.identityVersion === 'v2.0';
  const url = v2 ? `${settings.authUrl}/tenants` : `${settings.authUrl}/auth/tokens`;
  const res = await session.authorizedGet(url, { subjectToken: !v2, signal });
  if (res.statusCode !== 200) {
    const detail = cleanErrorMessage(await res.body.text().catch(() => ''));
    throw new OpenStackError(
      `KEYSTONE_HTTP_${res.statusCode}`,
      `GET ${url} answered ${res.statusCode}${detail ? `: ${detail}` : ''} while looking up the token's project`,
      'set the project by id (OS_PROJECT_ID / auth.project_id on the target) to skip this lookup',
      { service: 'keystone', method: 'GET', url, status: res.statusCode },
      { retryable: res.statusCode >= 500 },
    );
  }
  if (v2) {
    const doc = await readJson(res.body, v2TenantsSchema, { service: 'keystone', method: 'GET', url });
    const found = doc.tenants.find((t) => t.name === settings.scope?.projectName);
    if (found) return found.id;
  } else {
    const doc = await readJson(res.body, v3TokenProjectSchema, { service: 'keystone', method: 'GET', url });
    if (doc.token.project) return doc.token.project.id;
  }
  throw new OpenStackError(
    'KEYSTONE_NO_PROJECT',
    `the token from ${settings.source} is not scoped to a project, so the images it owns cannot be told apart`,
    'scope the credentials to a project: OS_PROJECT_NAME (+ OS_PROJECT_DOMAIN_NAME) or OS_PROJECT_ID',
    { service: 'keystone', method: 'GET', url },
  );
}
