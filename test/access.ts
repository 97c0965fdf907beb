// Who may call what (../shared/API.md, Access): every route × {no token, a public user, the user themself, staff},
// with the status each must answer. Run through the handler on both databases (api-suite.ts) and over real HTTP
// against the local server (server.test.ts), on a database seeded as a person's machine seeds it.
import type { Call } from './events.ts'

export type Send = (call: Call) => Promise<{ status: number; text: string }>
type Who = 'nobody' | 'public' | 'themself' | 'staff'
type Access = 'anyone' | 'user' | 'self' | 'staff'

interface Rule {
  method: string
  /** With {user_id}: the caller's own id for `themself`, another user's otherwise. */
  path: string
  access: Access
  /** The status when allowed. */
  ok: number
  body?: (who: Who) => unknown
  form?: string
}

const json = { 'content-type': 'application/json' }
const form = { 'content-type': 'application/x-www-form-urlencoded' }

// In an order where an allowed call never spoils a later one: the user deleted is one made for it, and the password
// changes come last.
export const RULES: Rule[] = [
  { method: 'GET', path: '/', access: 'anyone', ok: 200 },
  { method: 'GET', path: '/greet', access: 'anyone', ok: 200 },
  { method: 'GET', path: '/openapi.json', access: 'anyone', ok: 200 },
  { method: 'GET', path: '/docs', access: 'anyone', ok: 200 },
  {
    method: 'POST',
    path: '/auth/registration',
    access: 'anyone',
    ok: 200,
    body: (who) => ({ username: `new-${who}`, email: `new-${who}@example.com`, password: 'kestrel harbour' }),
  },
  { method: 'POST', path: '/auth/token', access: 'anyone', ok: 200, form: 'username=juniper&password=password' },
  { method: 'GET', path: '/animals', access: 'anyone', ok: 200 },
  { method: 'GET', path: '/animals/1', access: 'anyone', ok: 200 },
  { method: 'POST', path: '/animals', access: 'staff', ok: 200, body: () => ({ name: 'rex', age: 3, kind: 'dog' }) },
  {
    method: 'PUT',
    path: '/animals/1',
    access: 'staff',
    ok: 200,
    body: () => ({ age: 5, adopter_id: 2, adoption_date: '2024-01-02' }),
  },
  { method: 'DELETE', path: '/animals/16', access: 'staff', ok: 204 },
  { method: 'GET', path: '/users', access: 'staff', ok: 200 },
  { method: 'GET', path: '/users/me', access: 'user', ok: 200 },
  { method: 'GET', path: '/users/{user_id}', access: 'self', ok: 200 },
  { method: 'GET', path: '/users/{user_id}/fosters', access: 'self', ok: 200 },
  { method: 'GET', path: '/users/{user_id}/pets', access: 'self', ok: 200 },
  { method: 'DELETE', path: '/users/{user_id}', access: 'self', ok: 204 },
  {
    method: 'PUT',
    path: '/users/me/password',
    access: 'user',
    ok: 204,
    body: (who) => ({
      current_password: who === 'staff' ? 'password' : 'kestrel harbour',
      new_password: 'osprey lighthouse',
    }),
  },
]

/** What `who` must get from a route with `access`: 401 without a token, 403 with the wrong one. */
export function expected(rule: Rule, who: Who): number {
  if (rule.access === 'anyone') return rule.ok
  if (who === 'nobody') return 401
  if (rule.access === 'staff' && who !== 'staff') return 403
  if (rule.access === 'self' && who === 'public') return 403
  return rule.ok
}

/** Runs every rule for every caller, in order; returns one line per call, `METHOD path as who: status` and, where it
 * is not what the table says, what it should be. */
export async function accessMatrix(
  send: Send,
  login: (username: string, password: string) => Promise<string>,
): Promise<string[]> {
  const register = async (username: string) => {
    const reply = await send({
      method: 'POST',
      path: '/auth/registration',
      headers: json,
      body: JSON.stringify({ username, email: `${username}@example.com`, password: 'kestrel harbour' }),
    })
    if (reply.status !== 200) throw new Error(`registering ${username}: ${reply.status} ${reply.text}`)
    return JSON.parse(reply.text).id as number
  }
  // A public user who calls, another public user, and one who deletes themself.
  const ids = {
    publicId: await register('pat-access'),
    otherId: await register('olive-access'),
    deleterId: await register('dee-access'),
  }
  const tokens: Record<Who, string | undefined> = {
    nobody: undefined,
    public: await login('pat-access', 'kestrel harbour'),
    themself: await login('pat-access', 'kestrel harbour'),
    staff: await login('juniper', 'password'),
  }
  const deleter = await login('dee-access', 'kestrel harbour')
  const lines: string[] = []
  for (const rule of RULES) {
    const callers: Who[] =
      rule.access === 'self' ? ['nobody', 'public', 'themself', 'staff'] : ['nobody', 'public', 'staff']
    for (const who of callers) {
      // Deleting a user: the one who deletes themself is made for it, and staff delete the other one.
      const deleting = rule.method === 'DELETE' && rule.access === 'self'
      const self = deleting ? ids.deleterId : ids.publicId
      const path = rule.path.replace('{user_id}', String(who === 'themself' ? self : ids.otherId))
      const token = deleting && who !== 'staff' && who !== 'nobody' ? deleter : tokens[who]
      const headers = {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(rule.body ? json : rule.form ? form : {}),
      }
      const body = rule.body ? JSON.stringify(rule.body(who)) : rule.form
      const { status, text } = await send({ method: rule.method, path, headers, body })
      const want = expected(rule, who)
      lines.push(
        `${rule.method} ${path} as ${who}: ${status}${status === want ? '' : ` (should be ${want}: ${text.slice(0, 200)})`}`,
      )
    }
  }
  return lines
}
