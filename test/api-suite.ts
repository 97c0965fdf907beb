// The HTTP contract (../shared/API.md), run by sqlite.test.ts and postgres.test.ts on their database.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SignJWT } from 'jose'
import type { APIGatewayProxyEvent, APIGatewayProxyEventV2 } from 'aws-lambda'
import {
  ADDRESS_LIMITS,
  ADDRESS_WINDOW_MS,
  closeDatabase,
  database,
  listAnimals,
  migrate,
  openDatabase,
  SCHEMA_VERSION,
  type DbConfig,
} from '../db.ts'
import { handler as seedHandler, loadSample, seed, type SampleData } from '../seed.ts'
import { functionUrlEvent, httpApiEvent, restApiEvent, type Call } from './events.ts'
import { accessMatrix, RULES } from './access.ts'
import type { Fixture } from './fixtures.ts'

const { handler } = await import('../api.ts')
const sample = loadSample()
const sampleUsers = Object.keys(sample.users) // seeded in this order: ids 1, 2, ...
const userId = (username: string) => sampleUsers.indexOf(username) + 1
const today = () => new Date().toISOString().slice(0, 10)

interface Reply {
  status: number
  headers: Record<string, string>
  body: any
  text: string
}

async function send(event: APIGatewayProxyEvent | APIGatewayProxyEventV2): Promise<Reply> {
  const result = await handler(event)
  const text = result.body ?? ''
  const type = String(result.headers?.['content-type'] ?? '')
  return {
    status: result.statusCode,
    headers: result.headers as Record<string, string>,
    text,
    body: type.startsWith('application/json') && text ? JSON.parse(text) : undefined,
  }
}

const call = (c: Call) => send(httpApiEvent(c))
const get = (path: string, query?: string, headers?: Record<string, string>) => call({ path, query, headers })
const json = (method: string, path: string, body: unknown, token?: string) =>
  call({
    method,
    path,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
  })
const del = (path: string, token?: string) =>
  call({ method: 'DELETE', path, headers: token ? { authorization: `Bearer ${token}` } : {} })
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
/** A GET as the token's user. */
const getAs = (token: string, path: string, query?: string) => get(path, query, bearer(token))

function form(fields: Record<string, string>) {
  return call({
    method: 'POST',
    path: '/auth/token',
    body: new URLSearchParams(fields).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  })
}

/** A token as /auth/token issues it for user 1 (juniper, password version 1), with `claims` changed: undefined leaves one out. */
const TOKEN_CLAIMS = { iss: 'buddy-system', aud: 'buddy-system-api' }
async function token(claims: Record<string, unknown> = {}, key = process.env.JWT_KEY!): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  const { typ = 'at+jwt', ...rest } = { ...TOKEN_CLAIMS, sub: '1', pwv: 1, iat: now, exp: now + 3600, ...claims }
  const payload = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined))
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'HS256', typ: typ as string })
    .sign(new TextEncoder().encode(key))
}

async function login(username = 'juniper', password = 'password'): Promise<string> {
  const reply = await form({ username, password })
  assert.equal(reply.status, 200, reply.text)
  return reply.body.access_token
}

const byKey =
  <T>(key: (x: T) => string | number) =>
  (a: T, b: T) => {
    const [ka, kb] = [key(a), key(b)]
    return ka < kb ? -1 : ka > kb ? 1 : 0
  }

/** The sample's animals in the order the API must list them: by `field`, ties by id. */
function sampleOrder(field: 'name' | 'age' | 'intake_date', data: SampleData = sample) {
  return Object.values(data.animals)
    .map((a, i) => ({ ...a, id: i + 1 }))
    .sort((a, b) => byKey<typeof a>((x) => x[field])(a, b) || a.id - b.id)
}

export function apiSuite(fixture: Fixture) {
  describe('pages', () => {
    it('serves an HTML page with the title and description at /', async () => {
      const reply = await get('/')
      assert.equal(reply.status, 200)
      assert.match(reply.headers['content-type'], /^text\/html/)
      assert.match(reply.text, /buddy system API/)
      assert.match(reply.text, /API for managing fosters and adoptions\./)
      assert.match(reply.text, /href="openapi\.json"/)
      assert.match(reply.text, /href="docs"/)
    })

    it('serves /docs: Swagger UI at a pinned version, with Subresource Integrity, on the OpenAPI document', async () => {
      const reply = await get('/docs')
      assert.equal(reply.status, 200)
      assert.match(reply.headers['content-type'], /^text\/html/)
      const tags = reply.text.match(/<(script|link)[^>]+cdn\.jsdelivr\.net[^>]+>/g) ?? []
      assert.equal(tags.length, 2)
      for (const tag of tags) {
        assert.match(tag, /swagger-ui-dist@\d+\.\d+\.\d+\//, 'a pinned version')
        assert.match(tag, /integrity="sha384-[A-Za-z0-9+/]{64}" crossorigin="anonymous"/)
      }
      assert.match(reply.text, /url: 'openapi\.json'/)
    })

    it('greets nobody', async () => {
      assert.deepEqual((await get('/greet')).body, { greeting: 'hello to nobody' })
    })

    it('describes every route in an OpenAPI 3.1 document built from the validating schemas', async () => {
      const { status, body } = await get('/openapi.json')
      assert.equal(status, 200)
      assert.equal(body.openapi, '3.1.0')
      const operations = Object.entries(body.paths).flatMap(([path, ops]) =>
        Object.keys(ops as object).map((m) => `${m.toUpperCase()} ${path}`),
      )
      assert.deepEqual(operations.sort(), [
        'DELETE /animals/{animal_id}',
        'DELETE /users/{user_id}',
        'GET /',
        'GET /animals',
        'GET /animals/{animal_id}',
        'GET /docs',
        'GET /greet',
        'GET /openapi.json',
        'GET /users',
        'GET /users/me',
        'GET /users/{user_id}',
        'GET /users/{user_id}/fosters',
        'GET /users/{user_id}/pets',
        'POST /animals',
        'POST /auth/registration',
        'POST /auth/token',
        'PUT /animals/{animal_id}',
        'PUT /users/me/password',
      ])
      // Each operation says who may call it, as API.md's Access table does (the same table the access test runs).
      for (const rule of RULES) {
        const path = rule.path.replace(/\/(1|16)$/, '/{animal_id}')
        const operation = body.paths[path][rule.method.toLowerCase()]
        assert.equal(operation['x-access'], rule.access, `${rule.method} ${path}`)
        assert.match(operation.description, /^Who may call it: /)
        assert.equal(Boolean(operation.security), rule.access !== 'anyone', `${rule.method} ${path} needs a token`)
      }
      const create = body.paths['/animals'].post
      const schema = create.requestBody.content['application/json'].schema
      assert.deepEqual(schema.required.sort(), ['age', 'kind', 'name'])
      assert.deepEqual(
        schema.properties.age.anyOf.map((s: any) => s.type),
        ['integer', 'string'],
      )
      assert.deepEqual(create.security, [{ bearer: [] }])
      const sort = body.paths['/animals'].get.parameters.find((p: any) => p.name === 'sort')
      assert.deepEqual(sort.schema.enum, ['name', 'age', 'intake_date'])
      assert.ok(body.paths['/auth/token'].post.requestBody.content['application/x-www-form-urlencoded'])
    })
  })

  describe('animals', () => {
    for (const sort of ['name', 'age', 'intake_date'] as const) {
      it(`lists the animals sorted by ${sort}, ties broken by id`, async () => {
        const { status, body } = await get('/animals', sort === 'name' ? '' : `sort=${sort}`)
        assert.equal(status, 200)
        assert.deepEqual(body.meta, { count: 16, limit: 100, offset: 0 })
        assert.deepEqual(
          body.animals.map((a: any) => [a.id, a.name]),
          sampleOrder(sort).map((a) => [a.id, a.name]),
        )
      })
    }

    it('filters by intake date, both bounds inclusive', async () => {
      const dates = sampleOrder('intake_date').map((a) => a.intake_date)
      const [after, before] = [dates[3], dates[10]]
      const { body } = await get('/animals', `sort=intake_date&intake_after=${after}&intake_before=${before}`)
      const expected = dates.filter((d) => d >= after && d <= before)
      assert.deepEqual(
        body.animals.map((a: any) => a.intake_date),
        expected,
      )
      assert.equal(body.meta.count, expected.length)
      assert.equal((await get('/animals', `intake_after=${dates.at(-1)}`)).body.meta.count, 1)
      assert.equal((await get('/animals', `intake_before=${dates[0]}`)).body.meta.count, 1)
    })

    // Small pages of a wide window make SQLite walk the sort order's index, large ones read the window (db.ts).
    it('filters by intake date and sorts by another column, in pages small and large', async () => {
      const dates = sampleOrder('intake_date').map((a) => a.intake_date)
      const [after, before] = [dates[2], dates[13]]
      for (const sort of ['name', 'age'] as const) {
        const matches = sampleOrder(sort).filter((a) => a.intake_date >= after && a.intake_date <= before)
        for (const [limit, offset] of [
          [2, 0],
          [3, 4],
          [100, 0],
        ]) {
          const { body } = await get(
            '/animals',
            `sort=${sort}&intake_after=${after}&intake_before=${before}&limit=${limit}&offset=${offset}`,
          )
          assert.equal(body.meta.count, matches.length)
          assert.deepEqual(
            body.animals.map((a: any) => a.id),
            matches.slice(offset, offset + limit).map((a) => a.id),
            `${sort} ${limit} ${offset}`,
          )
        }
      }
    })

    it('pages with limit and offset, counting every match in meta', async () => {
      const { body } = await get('/animals', 'sort=age&limit=5&offset=10')
      assert.deepEqual(body.meta, { count: 16, limit: 5, offset: 10 })
      assert.deepEqual(
        body.animals.map((a: any) => a.id),
        sampleOrder('age')
          .slice(10, 15)
          .map((a) => a.id),
      )
      const past = await get('/animals', 'offset=100')
      assert.deepEqual(past.body, { meta: { count: 16, limit: 100, offset: 100 }, animals: [] })
    })

    it('takes the last of repeated query keys', async () => {
      const { body } = await get('/animals', 'sort=name&sort=age&limit=3')
      assert.deepEqual(
        body.animals.map((a: any) => a.id),
        sampleOrder('age')
          .slice(0, 3)
          .map((a) => a.id),
      )
    })

    it('answers 422 for an unknown sort, a bad date and a limit out of range, one entry each', async () => {
      const { status, body } = await get('/animals', 'sort=weight&intake_after=2022-02-30&limit=1001')
      assert.equal(status, 422)
      assert.deepEqual(
        body.detail.map((d: any) => d.loc),
        [
          ['query', 'sort'],
          ['query', 'intake_after'],
          ['query', 'limit'],
        ],
      )
      assert.deepEqual(
        body.detail.map((d: any) => d.input),
        ['weight', '2022-02-30', 1001],
      )
      for (const d of body.detail) assert.equal(typeof d.msg, 'string')
      assert.equal((await get('/animals', 'limit=0')).status, 422)
      assert.equal((await get('/animals', 'offset=-1')).status, 422)
    })

    it('reads one animal, and answers 404 with the entity body for a missing one', async () => {
      const { status, body } = await get('/animals/3')
      assert.equal(status, 200)
      const expected = sampleOrder('name').find((a) => a.id === 3)!
      assert.equal(body.animal.name, expected.name)
      assert.equal(body.animal.fixed, expected.fixed)
      assert.deepEqual(Object.keys(body.animal).sort(), [
        'adopter_id',
        'adoption_date',
        'age',
        'fixed',
        'id',
        'intake_date',
        'kind',
        'name',
        'vaccinated',
      ])
      const missing = await get('/animals/999')
      assert.equal(missing.status, 404)
      assert.deepEqual(missing.body, { detail: { type: 'entity_not_found', entity_name: 'Animal', entity_id: 999 } })
      assert.equal((await get('/animals/99999999999')).body.detail.entity_id, 99999999999)
    })

    it('answers 422 with loc path for an id that is not an integer', async () => {
      const { status, body } = await get('/animals/abc')
      assert.equal(status, 422)
      assert.deepEqual(body.detail[0].loc, ['path', 'animal_id'])
      assert.equal(body.detail[0].input, 'abc')
    })

    it('answers 422, not 500, for an id whose percent-encoding is broken', async () => {
      const { status, body } = await get('/animals/%E0%A4%A')
      assert.equal(status, 422)
      assert.deepEqual(body.detail[0].loc, ['path', 'animal_id'])
      assert.equal(body.detail[0].input, '%E0%A4%A')
    })

    it('creates an animal taken in today, accepting numbers and booleans as strings', async () => {
      const token = await login()
      const { status, body } = await json(
        'POST',
        '/animals',
        { name: 'rex', age: '3', kind: 'dog', fixed: 'true' },
        token,
      )
      assert.equal(status, 200)
      assert.deepEqual(body.animal, {
        id: 17,
        name: 'rex',
        age: 3,
        kind: 'dog',
        fixed: true,
        vaccinated: false,
        intake_date: today(),
        adopter_id: null,
        adoption_date: null,
      })
      assert.deepEqual((await get('/animals/17')).body, body)
      assert.equal((await get('/animals')).body.meta.count, 17)
      assert.equal((await get('/animals', `intake_after=${today()}`)).body.meta.count, 1)
    })

    it('answers 422 for each kind of bad animal, one entry per problem', async () => {
      const token = await login()
      const bad = await json('POST', '/animals', { age: 'three', kind: 7, fixed: 'maybe' }, token)
      assert.equal(bad.status, 422)
      assert.deepEqual(
        bad.body.detail.map((d: any) => [d.type, d.loc.join('.')]),
        [
          ['missing', 'body.name'],
          ['invalid_value', 'body.age'],
          ['invalid_type', 'body.kind'],
          ['invalid_value', 'body.fixed'],
        ],
      )
      assert.equal(bad.body.detail[0].msg, 'Field required')
      for (const [body, loc] of [
        [{ name: 'a', age: -1, kind: 'cat' }, 'body.age'],
        [{ name: 'a', age: 2.5, kind: 'cat' }, 'body.age'],
        [{ name: '', age: 1, kind: 'cat' }, 'body.name'],
        [[1, 2], 'body'],
      ] as const) {
        const reply = await json('POST', '/animals', body, token)
        assert.equal(reply.status, 422, JSON.stringify(body))
        assert.equal(reply.body.detail[0].loc.join('.'), loc)
      }
      const malformed = await json('POST', '/animals', '{"name": "rex",', token)
      assert.equal(malformed.status, 422)
      assert.equal(malformed.body.detail[0].type, 'json_invalid')
      const empty = await json('POST', '/animals', '', token)
      assert.equal(empty.status, 422)
      assert.deepEqual(empty.body.detail[0].loc, ['body'])
      assert.equal((await get('/animals')).body.meta.count, 16, 'nothing was added')
    })

    it('updates only the fields sent, adoption included', async () => {
      const token = await login()
      const before = (await get('/animals/3')).body.animal
      const { status, body } = await json('PUT', '/animals/3', { age: '7', vaccinated: false }, token)
      assert.equal(status, 200)
      assert.deepEqual(body.animal, { ...before, age: 7, vaccinated: false })
      const adopted = await json('PUT', '/animals/3', { adopter_id: 2, adoption_date: '2024-02-29' }, token)
      assert.deepEqual([adopted.body.animal.adopter_id, adopted.body.animal.adoption_date], [2, '2024-02-29'])
      assert.ok((await getAs(token, '/users/2/pets')).body.animals.some((a: any) => a.id === 3))
      const returned = await json('PUT', '/animals/3', { adopter_id: null, adoption_date: null }, token)
      assert.deepEqual([returned.body.animal.adopter_id, returned.body.animal.adoption_date], [null, null])
      assert.deepEqual((await json('PUT', '/animals/3', {}, token)).body.animal, returned.body.animal)
    })

    it('refuses updates to a missing animal, to a missing adopter, and with bad values', async () => {
      const token = await login()
      const missing = await json('PUT', '/animals/999', { age: 1 }, token)
      assert.deepEqual([missing.status, missing.body.detail.entity_name], [404, 'Animal'])
      const nobody = await json('PUT', '/animals/3', { adopter_id: 999 }, token)
      assert.deepEqual(
        [nobody.status, nobody.body.detail],
        [404, { type: 'entity_not_found', entity_name: 'User', entity_id: 999 }],
      )
      const bad = await json('PUT', '/animals/3', { name: null, adoption_date: '2024-13-01' }, token)
      assert.equal(bad.status, 422)
      assert.deepEqual(
        bad.body.detail.map((d: any) => d.loc.join('.')),
        ['body.name', 'body.adoption_date'],
      )
      assert.equal((await get('/animals/3')).body.animal.adopter_id, sampleAdopter(3))
    })

    it('deletes an animal with its fosters, then answers 404 for it', async () => {
      const token = await login()
      const foster = sample.fosters[0]
      const animalId = Object.keys(sample.animals).indexOf(foster.animal_id) + 1
      const fosterer = userId(foster.user_id)
      const fostersBefore = (await getAs(token, `/users/${fosterer}/fosters`)).body.meta.count
      const reply = await del(`/animals/${animalId}`, token)
      assert.equal(reply.status, 204)
      assert.equal(reply.text, '')
      assert.equal((await get(`/animals/${animalId}`)).status, 404)
      assert.equal((await getAs(token, `/users/${fosterer}/fosters`)).body.meta.count, fostersBefore - 1)
      assert.equal((await del(`/animals/${animalId}`, token)).status, 404)
      assert.equal((await get('/animals')).body.meta.count, 15)
    })

    it('needs a bearer token to create, update or delete', async () => {
      for (const reply of [
        await json('POST', '/animals', { name: 'rex', age: 3, kind: 'dog' }),
        await json('PUT', '/animals/3', { age: 4 }),
        await del('/animals/3'),
      ]) {
        assert.equal(reply.status, 401)
        assert.deepEqual(reply.body, { detail: 'Not authenticated' })
        assert.equal(reply.headers['www-authenticate'], 'Bearer')
      }
      assert.equal((await get('/animals/3')).status, 200)
      assert.equal((await get('/animals')).body.meta.count, 16)
    })
  })

  describe('access', () => {
    it("answers every route as API.md's Access table says, for nobody, a public user, the user themself and staff", async () => {
      const lines = await accessMatrix(call, login)
      assert.deepEqual(
        lines.filter((line) => line.includes('should be')),
        [],
        lines.join('\n'),
      )
      assert.equal(lines.length, 58)
    })

    it('changes nothing for a caller it refuses', async () => {
      const {
        body: { id },
      } = await json('POST', '/auth/registration', {
        username: 'pat',
        email: 'pat@example.com',
        password: 'kestrel harbour',
      })
      const pat = await login('pat', 'kestrel harbour')
      const before = (await get('/animals')).body
      assert.equal((await json('POST', '/animals', { name: 'rex', age: 3, kind: 'dog' }, pat)).status, 403)
      assert.equal(
        (await json('PUT', '/animals/3', { adopter_id: id, adoption_date: '2024-01-02' }, pat)).status,
        403,
        'no adopting a pet for oneself',
      )
      assert.equal((await del('/animals/3', pat)).status, 403)
      assert.equal((await del('/users/1', pat)).status, 403)
      assert.deepEqual((await get('/animals')).body, before)
      assert.equal((await getAs(await login(), '/users/1')).status, 200, 'juniper is still there')
    })

    it("shows a user's email only to that user and to staff, fosters' embedded users included", async () => {
      const digby = userId('digby')
      const email = sample.users.digby.email
      const own = await login('digby')
      assert.equal((await getAs(own, `/users/${digby}`)).body.user.email, email)
      assert.ok((await getAs(own, `/users/${digby}/fosters`)).body.fosters.every((f: any) => f.user.email === email))
      const other = await login('reggie')
      for (const path of [`/users/${digby}`, `/users/${digby}/fosters`, `/users/${digby}/pets`, '/users']) {
        const reply = await getAs(other, path)
        assert.equal(reply.status, 403, path)
        assert.ok(!reply.text.includes(email), path)
      }
      const emails = Object.values(sample.users).map((u) => u.email)
      for (const path of ['/animals', '/animals/1', '/openapi.json']) {
        const { text } = await get(path)
        assert.deepEqual(
          emails.filter((e) => text.includes(e)),
          [],
          `${path} names no email`,
        )
      }
    })
  })

  describe('users', () => {
    it('lists every user without passwords, to staff', async () => {
      const { body } = await getAs(await login(), '/users')
      assert.equal(body.meta.count, 8)
      assert.deepEqual(
        body.users.map((u: any) => u.username),
        sampleUsers,
      )
      assert.deepEqual(body.users[0], {
        id: 1,
        username: sampleUsers[0],
        email: sample.users[sampleUsers[0]].email,
        created_at: sample.users[sampleUsers[0]].created_at,
        is_staff: true,
      })
      assert.deepEqual(
        body.users.filter((u: any) => u.is_staff).map((u: any) => u.username),
        ['juniper'],
        "the sample's staff: juniper alone",
      )
    })

    it('reads one user, and answers 404 for a missing one', async () => {
      const token = await login()
      assert.equal((await getAs(token, '/users/2')).body.user.username, sampleUsers[1])
      const missing = await getAs(token, '/users/999')
      assert.deepEqual(
        [missing.status, missing.body],
        [404, { detail: { type: 'entity_not_found', entity_name: 'User', entity_id: 999 } }],
      )
    })

    it('registers a user who then logs in and reads /users/me', async () => {
      const reg = await json('POST', '/auth/registration', {
        username: 'pat',
        email: 'pat@example.com',
        password: 'correct horse',
      })
      assert.equal(reg.status, 200)
      assert.deepEqual(Object.keys(reg.body).sort(), ['created_at', 'email', 'id', 'is_staff', 'username'])
      assert.equal(reg.body.is_staff, false, 'a new user is public')
      assert.match(reg.body.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/)
      const token = await form({ grant_type: 'password', username: 'pat', password: 'correct horse', scope: '' })
      assert.equal(token.status, 200)
      assert.equal(token.body.token_type, 'Bearer')
      assert.equal(token.body.expires_in, 3600)
      const me = await get('/users/me', '', { authorization: `Bearer ${token.body.access_token}` })
      assert.deepEqual(me.body, { user: reg.body })
    })

    it('answers /users/me without a token with 401 Not authenticated', async () => {
      const reply = await get('/users/me')
      assert.deepEqual(
        [reply.status, reply.body, reply.headers['www-authenticate']],
        [401, { detail: 'Not authenticated' }, 'Bearer'],
      )
      assert.equal((await get('/users/me', '', { authorization: 'Basic abc' })).status, 401)
    })

    it('refuses a taken username or email with a duplicate_value body', async () => {
      const taken = await json('POST', '/auth/registration', {
        username: 'juniper',
        email: 'new@example.com',
        password: 'kestrel harbour',
      })
      assert.deepEqual(
        [taken.status, taken.body.detail],
        [
          422,
          {
            type: 'duplicate_value',
            entity_name: 'User',
            entity_field: 'username',
            entity_field_value: 'juniper',
          },
        ],
      )
      const email = sample.users.juniper.email
      const dup = await json('POST', '/auth/registration', { username: 'someone', email, password: 'kestrel harbour' })
      assert.deepEqual(
        [dup.status, dup.body.detail.entity_field, dup.body.detail.entity_field_value],
        [422, 'email', email],
      )
      assert.equal((await getAs(await login(), '/users')).body.meta.count, 8)
    })

    it('refuses a bad registration without echoing the password', async () => {
      const reply = await json('POST', '/auth/registration', { username: '', email: 'not-an-email', password: 'short' })
      assert.equal(reply.status, 422)
      assert.deepEqual(
        reply.body.detail.map((d: any) => d.loc.join('.')),
        ['body.username', 'body.email', 'body.password'],
      )
      assert.ok(!reply.text.includes('short'))
    })

    it('refuses a wrong password and an unknown user alike', async () => {
      for (const fields of [
        { username: 'juniper', password: 'wrong' },
        { username: 'nobody', password: 'password' },
      ]) {
        const reply = await form(fields)
        assert.deepEqual(
          [reply.status, reply.body],
          [
            401,
            {
              detail: { error: 'invalid_client', error_description: 'invalid username or password' },
            },
          ],
        )
      }
      const missing = await form({ username: 'juniper' })
      assert.deepEqual([missing.status, missing.body.detail[0].loc], [422, ['body', 'password']])
      const asJson = await json('POST', '/auth/token', { username: 'juniper', password: 'password' })
      assert.deepEqual(
        [asJson.status, asJson.body],
        [415, { detail: 'Unsupported Media Type' }],
        'the token route reads a form, not JSON',
      )
    })

    it('refuses expired, forged, alg:none, malformed and foreign tokens: issuer, audience, type and age checked', async () => {
      const now = Math.floor(Date.now() / 1000)
      const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
      const none = `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64({ ...TOKEN_CLAIMS, sub: '1', pwv: 1, iat: now, exp: now + 3600 })}.`
      const good = await token()
      const [header, payload, signature] = good.split('.')
      // The signature's last character carries 4 bits that decoding drops: a neighbour spells the same bytes.
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
      const twin = `${header}.${payload}.${signature.slice(0, -1)}${alphabet[alphabet.indexOf(signature.at(-1)!) ^ 1]}`
      assert.deepEqual(
        Buffer.from(twin.split('.')[2], 'base64url'),
        Buffer.from(signature, 'base64url'),
        'the same signature bytes',
      )
      const cases: [string, string, string][] = [
        ['expired', await token({ iat: now - 3700, exp: now - 100 }), 'expired bearer token'],
        [
          'issued over an hour ago, though its exp is later',
          await token({ iat: now - 3700, exp: now + 3600 }),
          'expired bearer token',
        ],
        ['forged', await token({}, 'another key'.padEnd(64, '!')), 'invalid bearer token'],
        ['alg none', none, 'invalid bearer token'],
        ['no exp', await token({ exp: undefined }), 'invalid bearer token'],
        ['another issuer', await token({ iss: 'someone-else' }), 'invalid bearer token'],
        ['another audience', await token({ aud: 'another-api' }), 'invalid bearer token'],
        ['another type', await token({ typ: 'JWT' }), 'invalid bearer token'],
        ['no password version', await token({ pwv: undefined }), 'invalid bearer token'],
        ['an old password version', await token({ pwv: 0 }), 'invalid bearer token'],
        ['a second spelling', twin, 'invalid bearer token'],
        ['padded', `${good}=`, 'invalid bearer token'],
        ['malformed', 'not.a.token', 'invalid bearer token'],
      ]
      assert.equal((await get('/users/me', '', bearer(good))).status, 200, 'the token all these differ from is good')
      for (const [what, bad, description] of cases) {
        const reply = await get('/users/me', '', bearer(bad))
        assert.equal(reply.status, 401, what)
        assert.deepEqual(reply.body, { detail: { error: 'invalid_client', error_description: description } }, what)
      }
    })

    it("refuses a token issued before its user's last password change, and one whose user is gone", async () => {
      const { body: user } = await json('POST', '/auth/registration', {
        username: 'pat',
        email: 'pat@example.com',
        password: 'kestrel harbour',
      })
      const old = await login('pat', 'kestrel harbour')
      const change = (token: string, current: string, next: string) =>
        call({
          method: 'PUT',
          path: '/users/me/password',
          body: JSON.stringify({ current_password: current, new_password: next }),
          headers: { 'content-type': 'application/json', ...bearer(token) },
        })
      const wrong = await change(old, 'not my password', 'osprey lighthouse')
      assert.deepEqual([wrong.status, wrong.body], [403, { detail: 'Forbidden' }])
      assert.equal((await get('/users/me', '', bearer(old))).status, 200, 'a refused change revokes nothing')
      const done = await change(old, 'kestrel harbour', 'osprey lighthouse')
      assert.deepEqual([done.status, done.text], [204, ''])
      assert.equal((await get('/users/me', '', bearer(old))).status, 401, 'the token from before the change')
      assert.equal((await form({ username: 'pat', password: 'kestrel harbour' })).status, 401, 'the old password')
      const fresh = await login('pat', 'osprey lighthouse')
      assert.equal(
        (await get('/users/me', '', bearer(fresh))).body.user.id,
        user.id,
        'a token issued after it, in the same second too',
      )
      assert.equal((await del(`/users/${user.id}`, fresh)).status, 204)
      const gone = await get('/users/me', '', bearer(fresh))
      assert.deepEqual([gone.status, gone.body.detail.error_description], [401, 'invalid bearer token'])
    })

    it('takes new passwords of 8 to 256 characters that are not among the most common, at registration and at a change', async () => {
      const register = (password: string) =>
        json('POST', '/auth/registration', {
          username: `u${Math.random().toString(36).slice(2, 10)}`,
          email: `${Math.random().toString(36).slice(2)}@example.com`,
          password,
        })
      for (const common of ['password', 'iloveyou', 'qwertyuiop', 'Password1', 'sunshine']) {
        const reply = await register(common)
        assert.equal(reply.status, 422, common)
        // Exactly these keys: no `input`, so the password is not echoed.
        assert.deepEqual(
          reply.body.detail,
          [{ type: 'password_too_common', loc: ['body', 'password'], msg: reply.body.detail[0].msg }],
          common,
        )
      }
      for (const [password, ok] of [
        ['x'.repeat(7), false],
        ['kestrel1', true],
        ['k'.repeat(255) + 'x', true],
        ['k'.repeat(256) + 'x', false],
      ] as const) {
        assert.equal((await register(password)).status, ok ? 200 : 422, `${password.length} characters`)
      }
      const token = await login()
      const change = await call({
        method: 'PUT',
        path: '/users/me/password',
        body: JSON.stringify({ current_password: 'password', new_password: 'letmein123' }),
        headers: { 'content-type': 'application/json', ...bearer(token) },
      })
      assert.equal(change.status, 422)
      assert.deepEqual(
        change.body.detail.map((d: any) => [d.type, d.loc.join('.')]),
        [['password_too_common', 'body.new_password']],
      )
      assert.equal((await get('/users/me', '', bearer(token))).status, 200, 'nothing changed')
    })

    it("lists a user's fosters with the animal and the user", async () => {
      const fosterer = sample.fosters[0].user_id
      const expected = sample.fosters.filter((f) => f.user_id === fosterer)
      const token = await login()
      const { status, body } = await getAs(token, `/users/${userId(fosterer)}/fosters`)
      assert.equal(status, 200)
      assert.equal(body.meta.count, expected.length)
      const first = body.fosters.find((f: any) => f.start_date === expected[0].start_date)
      assert.equal(first.end_date, expected[0].end_date)
      assert.equal(first.user.username, fosterer)
      assert.equal(first.animal.name, sample.animals[expected[0].animal_id].name)
      assert.equal((await getAs(token, '/users/999/fosters')).status, 404)
    })

    it("lists a user's pets", async () => {
      const adopter = sample.adoptions[0].user_id
      const expected = sample.adoptions
        .filter((a) => a.user_id === adopter)
        .map((a) => sample.animals[a.animal_id].name)
      const token = await login(adopter)
      const { body } = await getAs(token, `/users/${userId(adopter)}/pets`)
      assert.equal(body.meta.count, expected.length)
      assert.deepEqual(body.animals.map((a: any) => a.name).sort(), expected.sort())
      for (const a of body.animals) assert.equal(a.adopter_id, userId(adopter))
      assert.equal((await getAs(await login(), '/users/999/pets')).status, 404)
    })

    it('lets a user delete only themself: fosters go, pets lose their adopter, the token stops working', async () => {
      const adopter = sample.adoptions[0].user_id
      const id = userId(adopter)
      const token = await login(adopter)
      const other = await del(`/users/${id === 1 ? 2 : 1}`, token)
      assert.deepEqual([other.status, other.body], [403, { detail: 'Forbidden' }])
      const pets = (await getAs(token, `/users/${id}/pets`)).body.animals
      const reply = await del(`/users/${id}`, token)
      assert.deepEqual([reply.status, reply.text], [204, ''])
      assert.equal((await getAs(await login(), `/users/${id}`)).status, 404)
      for (const pet of pets) assert.equal((await get(`/animals/${pet.id}`)).body.animal.adopter_id, null)
      const gone = await get('/users/me', '', { authorization: `Bearer ${token}` })
      assert.deepEqual(gone.body, { detail: { error: 'invalid_client', error_description: 'invalid bearer token' } })
      const fosters = await database().then((db) => db.all('SELECT id FROM fosters WHERE user_id = ?', [id]))
      assert.deepEqual(fosters, [])
    })
  })

  describe('errors', () => {
    it('answers an unknown route with 404 and a known one with another method with 405 and Allow', async () => {
      assert.deepEqual(await get('/nowhere').then((r) => [r.status, r.body]), [404, { detail: 'Not Found' }])
      const reply = await call({ method: 'PATCH', path: '/animals/1' })
      assert.deepEqual(
        [reply.status, reply.body, reply.headers.allow],
        [405, { detail: 'Method Not Allowed' }, 'GET, PUT, DELETE, HEAD'],
      )
    })

    it('answers anything unexpected with a bare 500 and logs the cause', async (t) => {
      const db = await database()
      await db.all('DROP TABLE fosters')
      const logged = t.mock.method(console, 'error', () => {})
      const token = await login()
      const reply = await getAs(token, '/users/1/fosters')
      assert.deepEqual([reply.status, reply.body], [500, { detail: 'Internal Server Error' }])
      assert.equal(logged.mock.callCount(), 1)
      const [line] = logged.mock.calls[0].arguments as [any]
      assert.deepEqual([line.method, line.route, line.what], ['GET', '/users/{user_id}/fosters', 'failed'])
      assert.match(line.cause.message, /fosters/)
    })

    it('logs one object per request on Lambda: method, route pattern, status, time, cold start, source address', async (t) => {
      const lines = t.mock.method(console, 'log', () => {})
      await handler(httpApiEvent({ path: '/animals/2' }))
      assert.equal(lines.mock.callCount(), 0, 'not outside Lambda: the local server logs its own')
      process.env.AWS_LAMBDA_FUNCTION_NAME = 'buddy-system'
      t.mock.method(console, 'error', () => {})
      try {
        await handler(httpApiEvent({ path: '/animals/2' }))
        await handler(restApiEvent({ path: '/animals/999999' }))
        await handler(httpApiEvent({ method: 'PATCH', path: '/nowhere' }))
        await handler({ hello: 'world' } as unknown as APIGatewayProxyEvent)
      } finally {
        delete process.env.AWS_LAMBDA_FUNCTION_NAME
      }
      const logged = lines.mock.calls.map((c) => c.arguments)
      assert.ok(
        logged.every((args) => args.length === 1 && typeof args[0].ms === 'number' && args[0].cold === false),
        'one object each, its time a number (this module served requests before)',
      )
      const fields = logged.map(([{ ms, cold, ...rest }]) => rest)
      assert.deepEqual(fields, [
        { method: 'GET', route: '/animals/{animal_id}', status: 200, source: '192.0.2.1' },
        { method: 'GET', route: '/animals/{animal_id}', status: 404, source: null }, // a REST event without identity
        { method: 'PATCH', route: null, status: 404, source: '192.0.2.1' },
        { method: null, route: null, status: 400, source: null },
      ])
    })

    it('never logs a token, a password or a body, on any route, failed logins included', async (t) => {
      const logged: string[] = []
      // As the Lambda runtime writes one argument under the JSON log format (aws-lambda-nodejs-runtime-interface-client,
      // LogPatch.js): the object as `message`, an Error in it as errorType, errorMessage and stackTrace.
      const runtime = (level: string) => (message: unknown) =>
        logged.push(
          JSON.stringify({ timestamp: new Date().toISOString(), level, requestId: 'id', message }, (_, value) =>
            value instanceof Error
              ? { errorType: value.name, errorMessage: value.message, stackTrace: value.stack?.split('\n'), ...value }
              : value,
          ),
        )
      for (const [method, level] of [
        ['log', 'INFO'],
        ['warn', 'WARN'],
        ['error', 'ERROR'],
      ] as const)
        t.mock.method(console, method, runtime(level))
      const tokens: string[] = []
      const loginAndKeep = async (username: string, password: string) => {
        const token = await login(username, password)
        tokens.push(token)
        return token
      }
      const openApi = (await get('/openapi.json')).body // the routes' patterns
      process.env.AWS_LAMBDA_FUNCTION_NAME = 'buddy-system'
      let sent = 0
      const counted = (c: Call) => (sent++, call(c))
      try {
        const lines = await accessMatrix(counted, async (u, p) => (sent++, loginAndKeep(u, p)))
        assert.deepEqual(
          lines.filter((line) => line.includes('should be')),
          [],
        )
        for (const password of ['hunter2-wrong', 'kestrel harbour']) {
          const form = `username=olive-access&password=${encodeURIComponent(password)}`
          await counted({
            method: 'POST',
            path: '/auth/token',
            body: form,
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
          })
        }
      } finally {
        delete process.env.AWS_LAMBDA_FUNCTION_NAME
      }
      const requests = logged.map((line) => JSON.parse(line)).filter((line) => 'status' in line.message)
      assert.equal(requests.length, sent, 'one line per request')
      const routes = new Set(Object.keys(openApi.paths))
      for (const { message } of requests) {
        assert.deepEqual(Object.keys(message), ['method', 'route', 'status', 'ms', 'cold', 'source'])
        assert.ok(routes.has(message.route), message.route)
      }
      assert.ok(
        logged.some((line) => /"what":"failed login","username":"olive-access","source":"192.0.2.1"/.test(line)),
        'a failed login says who was tried and from where',
      )
      const secrets = [
        'kestrel harbour',
        'osprey lighthouse',
        'hunter2-wrong',
        '"password"',
        '@example.com',
        'rex',
        ...tokens,
      ]
      for (const line of logged) for (const secret of secrets) assert.ok(!line.includes(secret), `${secret} in ${line}`)
      assert.ok(tokens.length >= 4 && logged.length > sent)
    })
  })

  describe('CORS', () => {
    const origin = 'http://localhost:5173'

    it('answers a preflight from an allowed origin without touching the database', async () => {
      await closeDatabase()
      const saved = process.env.DB_LOCATION
      process.env.DB_LOCATION = 'nowhere'
      try {
        const reply = await call({
          method: 'OPTIONS',
          path: '/animals/1',
          headers: {
            origin,
            'access-control-request-method': 'PUT',
            'access-control-request-headers': 'authorization,content-type',
          },
        })
        assert.equal(reply.status, 204)
        assert.equal(reply.headers['access-control-allow-origin'], origin)
        assert.equal(reply.headers['access-control-allow-credentials'], 'true')
        assert.match(reply.headers['access-control-allow-methods'], /PUT/)
        assert.equal(reply.headers['access-control-allow-headers'], 'authorization,content-type')
        const logged: unknown[] = []
        const error = console.error
        console.error = (...args: unknown[]) => logged.push(args)
        try {
          assert.equal((await get('/animals')).status, 500, 'a request that needs the database fails here')
        } finally {
          console.error = error
        }
        assert.equal(logged.length, 1)
      } finally {
        process.env.DB_LOCATION = saved
      }
    })

    it('refuses a preflight from another origin, and adds no CORS headers for it', async () => {
      const headers = { origin: 'https://evil.example', 'access-control-request-method': 'GET' }
      const reply = await call({ method: 'OPTIONS', path: '/animals', headers })
      assert.equal(reply.status, 400)
      assert.equal(reply.headers['access-control-allow-origin'], undefined)
      assert.equal(
        (await get('/animals', '', { origin: 'https://evil.example' })).headers['access-control-allow-origin'],
        undefined,
      )
    })

    it('adds credentials-enabled CORS headers to answers for an allowed origin, errors included', async () => {
      for (const reply of [await get('/greet', '', { Origin: origin }), await get('/animals/999', '', { origin })]) {
        assert.equal(reply.headers['access-control-allow-origin'], origin)
        assert.equal(reply.headers['access-control-allow-credentials'], 'true')
        assert.equal(reply.headers.vary, 'Origin')
      }
    })
  })

  describe('Lambda events', () => {
    it('answers a REST API (payload 1.0) event with repeated query keys and mixed-case headers', async () => {
      const token = await login()
      const reply = await send(restApiEvent({ path: '/users/me', headers: { Authorization: `Bearer ${token}` } }))
      assert.equal(reply.status, 200)
      assert.equal(reply.body.user.username, 'juniper')
      const list = await send(restApiEvent({ path: '/animals', query: 'sort=name&sort=age&limit=2' }))
      assert.deepEqual(
        list.body.animals.map((a: any) => a.id),
        sampleOrder('age')
          .slice(0, 2)
          .map((a) => a.id),
      )
      const result = await handler(restApiEvent({ path: '/greet' }))
      assert.deepEqual(Object.keys(result).sort(), ['body', 'headers', 'isBase64Encoded', 'statusCode'])
    })

    it('strips the stage that an HTTP API on a named stage puts in rawPath', async () => {
      const reply = await send(httpApiEvent({ path: '/animals/3' }, 'prod'))
      assert.equal(reply.status, 200)
      assert.equal(reply.body.animal.id, 3)
      assert.equal((await send(httpApiEvent({ path: '/' }, 'prod'))).status, 200)
    })

    it('answers a function URL event with cookies and a base64-encoded JSON body', async () => {
      const token = await login()
      const event = functionUrlEvent(
        {
          method: 'POST',
          path: '/animals',
          base64: true,
          body: JSON.stringify({ name: 'ünïcode', age: 1, kind: 'cat' }),
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        },
        ['session=abc', 'theme=dark'],
      )
      const reply = await send(event)
      assert.equal(reply.status, 200, reply.text)
      assert.equal(reply.body.animal.name, 'ünïcode')
    })

    it('reads a base64-encoded form at /auth/token', async () => {
      const reply = await send(
        functionUrlEvent({
          method: 'POST',
          path: '/auth/token',
          base64: true,
          body: 'username=juniper&password=password',
          headers: { 'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8' },
        }),
      )
      assert.equal(reply.status, 200, reply.text)
    })

    it('answers an event that is not from API Gateway or a function URL with 400', async () => {
      const reply = await send({ hello: 'world' } as unknown as APIGatewayProxyEvent)
      assert.equal(reply.status, 400)
      assert.match(reply.body.detail, /not an API Gateway or function URL event/)
    })
  })

  describe('hostile input', () => {
    const count = async (table: 'users' | 'animals') =>
      Number((await (await database()).values(`SELECT COUNT(*) FROM ${table}`))[0][0])

    it('refuses what PostgreSQL cannot hold, on either database: NUL, unpaired surrogates, year 0', async () => {
      const token = await login()
      const before = await count('animals')
      for (const [method, path, body] of [
        ['POST', '/animals', { name: 'Re\u0000x', age: 1, kind: 'dog' }],
        ['POST', '/animals', { name: 'Rex', age: 1, kind: 'd\uD800og' }],
        ['PUT', '/animals/1', { kind: 'c\u0000at' }],
        ['PUT', '/animals/1', { adoption_date: '0000-01-01' }],
        ['POST', '/auth/registration', { username: 'nul\u0000l', email: 'n@example.com', password: 'kestrel harbour' }],
        ['POST', '/auth/registration', { username: 'nully', email: 'n@example.com', password: 'pass\u0000word' }],
      ] as const) {
        const reply = await json(method, path, body, token)
        assert.equal(reply.status, 422, `${method} ${path} ${JSON.stringify(body)}: ${reply.text}`)
        assert.ok(!reply.text.includes('pass\\u0000word'), 'no password echoed')
      }
      for (const fields of [
        { username: 'jun\u0000iper', password: 'password' },
        { username: 'juniper', password: 'pass\u0000word' },
      ]) {
        assert.equal((await form(fields)).status, 422)
      }
      assert.equal((await get('/animals', 'intake_after=0000-06-01')).status, 422)
      assert.equal((await get('/animals', 'intake_before=9999-12-31')).status, 200, 'the last day both hold')
      assert.equal((await get('/animals', 'intake_after=0001-01-01')).status, 200, 'year 1 is held by both')
      assert.equal(await count('animals'), before)
    })

    it('answers 422, never 500, to bodies nested thousands deep, and echoes none of them', async () => {
      const token = await login()
      const deep = (n: number, open: string, close: string, inner = '1') => open.repeat(n) + inner + close.repeat(n)
      for (const body of [
        `{"name": ${deep(5000, '[', ']')}, "age": 1, "kind": "dog"}`,
        deep(5000, '[', ']'),
        deep(5000, '{"a":', '}'),
        `{"name": "Rex", "age": ${deep(3000, '{"x":', '}')}, "kind": "dog"}`,
      ]) {
        const reply = await json('POST', '/animals', body, token)
        assert.equal(reply.status, 422, reply.text.slice(0, 200))
        assert.ok(reply.text.length < 2000, `a short answer: ${reply.text.length} characters`)
      }
    })

    it('bounds what a 422 echoes, so that no error answer is large', async () => {
      const token = await login()
      // 60 KB of bytes that are not UTF-8: each becomes U+FFFD, three bytes of JSON when echoed.
      const invalid = Buffer.alloc(60 * 1024, 0xff).toString('base64')
      const event = httpApiEvent({
        method: 'POST',
        path: '/animals',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      })
      const reply = await send({ ...event, body: invalid, isBase64Encoded: true })
      assert.equal(reply.status, 422)
      const long = await json(
        'POST',
        '/animals',
        { name: 'x'.repeat(30_000), age: 'y'.repeat(20_000), kind: 'z'.repeat(10_000) },
        token,
      )
      assert.equal(long.status, 422)
      assert.ok(long.text.length < 2000, `${long.text.length} characters`)
      assert.deepEqual(
        long.body.detail.map((d: { input: string }) => d.input.length),
        [101, 101, 101],
        'each echo cut to 100 characters and an ellipsis',
      )
      const query = await get('/animals', `sort=${'s'.repeat(100_000)}&limit=${'9'.repeat(100_000)}`)
      assert.equal(query.status, 422)
      assert.ok(query.text.length < 2000)
    })

    it('never echoes a malformed body that may hold a password', async () => {
      for (const body of [
        '{"username": "pat", "email": "p@example.com", "password": "hunter2-secret"',
        '{"password": hunter2-secret}',
      ]) {
        const reply = await json('POST', '/auth/registration', body)
        assert.equal(reply.status, 422)
        assert.equal(reply.body.detail[0].type, 'json_invalid')
        assert.ok(!reply.text.includes('hunter2'), reply.text)
      }
    })

    it('answers a malformed Lambda event with a 400 of its own, never a JavaScript message or a 500', async () => {
      const v2 = httpApiEvent({ path: '/animals' })
      for (const event of [
        {},
        [],
        { requestContext: { http: {} } },
        { ...v2, rawPath: 7 },
        { ...v2, rawPath: 'animals' },
        { ...v2, headers: { 'x-count': 5 } },
        { ...v2, headers: 'nope' },
        { ...v2, body: { a: 1 } },
        { ...v2, cookies: 'a=1' },
        { ...v2, rawQueryString: ['a'] },
        { httpMethod: 'GET', path: '/animals', headers: { accept: ['a'] } },
        { httpMethod: 'GET', path: '/animals', multiValueHeaders: { accept: 'a' } },
        { httpMethod: 'GET', path: '/animals', multiValueQueryStringParameters: { sort: [1] } },
        { httpMethod: 7, path: '/animals' },
      ]) {
        const reply = await send(event as unknown as APIGatewayProxyEventV2)
        assert.equal(reply.status, 400, JSON.stringify(event).slice(0, 100))
        assert.match(reply.body.detail, /^Bad Request: not an API Gateway or function URL event \(.+\)$/)
        assert.doesNotMatch(reply.body.detail, /Cannot read|undefined|TypeError/)
      }
      const nulls = await send({ ...v2, headers: { 'x-gone': null } } as unknown as APIGatewayProxyEventV2)
      assert.equal(nulls.status, 200, 'a null header is only absent')
    })

    it('accepts exactly one bearer token', async () => {
      const token = await login()
      const me = (authorization: string) => get('/users/me', undefined, { authorization })
      assert.equal((await me(`Bearer ${token}`)).status, 200)
      assert.equal((await me(`bearer ${token}`)).status, 200, 'the scheme in any case')
      for (const header of [
        `Bearer ${token} junk`,
        `Bearer ${token} ${token}`,
        `Bearer ${token},x`,
        `Bearer\t${token}`,
        `Bearer ${token}\u0000`,
      ]) {
        const reply = await me(header)
        assert.equal(reply.status, 401, header)
        assert.deepEqual(reply.body.detail, { error: 'invalid_client', error_description: 'invalid bearer token' })
      }
    })

    it('answers /auth/token with Cache-Control: no-store, and reads its form in any case of media type', async () => {
      const ok = await call({
        method: 'POST',
        path: '/auth/token',
        body: 'username=juniper&password=password',
        headers: { 'content-type': 'Application/X-WWW-Form-Urlencoded; Charset=UTF-8' },
      })
      assert.equal(ok.status, 200, ok.text)
      assert.equal(ok.headers['cache-control'], 'no-store')
      assert.equal(ok.headers.pragma, 'no-cache')
      const refused = await form({ username: 'juniper', password: 'wrong' })
      assert.equal(refused.status, 401)
      assert.equal(refused.headers['cache-control'], 'no-store')
    })

    it('matches route paths literally: no wildcard dots, no empty segments', async () => {
      for (const path of [
        '/openapiXjson',
        '/openapi.jsonX',
        '//',
        '//animals',
        '/animals//',
        '/animals/1//',
        '/users/me/',
      ]) {
        const reply = await get(path)
        assert.equal(reply.status, path === '/users/me/' ? 401 : 404, path)
      }
      assert.equal((await get('/openapi.json')).status, 200)
      assert.equal((await get('/animals/1/')).status, 200, 'one trailing slash is the same path')
    })

    it('strips the stage only where the path carries it: execute-api, not a custom domain', async () => {
      const onStage = await send(httpApiEvent({ path: '/animals', query: 'limit=1' }, 'animals'))
      assert.deepEqual([onStage.status, onStage.body.meta.limit], [200, 1])
      const root = await send(httpApiEvent({ path: '/' }, 'animals'))
      assert.match(root.headers['content-type'], /text\/html/)
      const custom = httpApiEvent({ path: '/animals', query: 'limit=1' })
      custom.requestContext.stage = 'animals'
      custom.requestContext.domainName = 'api.shelter.example'
      const mapped = await send(custom)
      assert.deepEqual([mapped.status, mapped.body.meta?.limit], [200, 1], "a custom domain's path has no stage in it")
    })

    it('with CORS_ORIGINS=*, allows any origin without credentials, null included, and varies preflights on what they echo', async () => {
      const saved = process.env.CORS_ORIGINS
      try {
        process.env.CORS_ORIGINS = '*'
        for (const origin of ['https://evil.example', 'null']) {
          const reply = await get('/animals/1', undefined, { origin })
          assert.equal(reply.headers['access-control-allow-origin'], '*', origin)
          assert.equal(reply.headers['access-control-allow-credentials'], undefined)
        }
        const pre = await call({
          method: 'OPTIONS',
          path: '/animals',
          headers: {
            origin: 'null',
            'access-control-request-method': 'POST',
            'access-control-request-headers': 'content-type',
          },
        })
        assert.equal(pre.status, 204)
        assert.equal(pre.headers['access-control-allow-origin'], '*')
        assert.equal(pre.headers.vary, 'Access-Control-Request-Headers')
        process.env.CORS_ORIGINS = 'https://shelter.example,*'
        const listed = await get('/animals/1', undefined, { origin: 'https://shelter.example' })
        assert.deepEqual(
          [
            listed.headers['access-control-allow-origin'],
            listed.headers['access-control-allow-credentials'],
            listed.headers.vary,
          ],
          ['https://shelter.example', 'true', 'Origin'],
        )
        const other = await get('/animals/1', undefined, { origin: 'https://other.example' })
        assert.deepEqual(
          [
            other.headers['access-control-allow-origin'],
            other.headers['access-control-allow-credentials'],
            other.headers.vary,
          ],
          ['*', undefined, 'Origin'],
        )
        process.env.CORS_ORIGINS = 'https://shelter.example'
        const pre2 = await call({
          method: 'OPTIONS',
          path: '/animals',
          headers: {
            origin: 'https://shelter.example',
            'access-control-request-method': 'PUT',
            'access-control-request-headers': 'authorization',
          },
        })
        assert.equal(pre2.headers.vary, 'Origin, Access-Control-Request-Headers')
        const refused = await get('/animals/1', undefined, { origin: 'null' })
        assert.deepEqual([refused.headers['access-control-allow-origin'], refused.headers.vary], [undefined, 'Origin'])
      } finally {
        if (saved === undefined) delete process.env.CORS_ORIGINS
        else process.env.CORS_ORIGINS = saved
      }
    })

    it('pages GET /users as /animals: limit, offset, and the count of all', async () => {
      const token = await login()
      const page = await getAs(token, '/users', 'limit=3&offset=2')
      assert.equal(page.status, 200)
      assert.deepEqual(page.body.meta, { count: 8, limit: 3, offset: 2 })
      assert.deepEqual(
        page.body.users.map((u: { id: number }) => u.id),
        [3, 4, 5],
      )
      assert.deepEqual((await getAs(token, '/users')).body.meta, { count: 8, limit: 100, offset: 0 })
      for (const query of ['limit=0', 'limit=1001', 'offset=-1', 'limit=x'])
        assert.equal((await getAs(token, '/users', query)).status, 422, query)
    })

    it('clears adoption_date with adopter_id when the adopter is deleted', async () => {
      const adopter = sample.adoptions[0].user_id
      const id = userId(adopter)
      const token = await login(adopter)
      const pets = (await getAs(token, `/users/${id}/pets`)).body.animals as { id: number }[]
      assert.ok(pets.length > 0)
      assert.equal((await del(`/users/${id}`, token)).status, 204)
      for (const pet of pets) {
        const { animal } = (await get(`/animals/${pet.id}`)).body
        assert.deepEqual([animal.adopter_id, animal.adoption_date], [null, null], `animal ${pet.id}`)
      }
    })
  })

  describe('identity', () => {
    const register = (username: string, email = `${Math.random().toString(36).slice(2)}@example.com`) =>
      json('POST', '/auth/registration', { username, email, password: 'kestrel harbour' })

    it('takes a username once whatever its case or Unicode form, and an email whatever its case', async () => {
      const staff = await login()
      const before = (await getAs(staff, '/users')).body.meta.count
      for (const name of [
        'Juniper',
        'JUNIPER',
        'ｊuniper',
        'ｊｕｎｉｐｅｒ',
        'JUNİPER'.normalize('NFD') === 'JUNİPER' ? 'juniper' : 'JUNIPER',
      ]) {
        const reply = await register(name)
        assert.equal(reply.status, 422, name)
        assert.deepEqual(reply.body.detail, {
          type: 'duplicate_value',
          entity_name: 'User',
          entity_field: 'username',
          entity_field_value: name,
        })
      }
      const email = await register('someone-new', 'JUNIPER@Cool.Email')
      assert.deepEqual([email.status, email.body.detail.entity_field], [422, 'email'])
      assert.equal((await getAs(staff, '/users')).body.meta.count, before, 'none registered')
      assert.equal((await form({ username: 'JUNIPER', password: 'password' })).status, 200, 'logs in as juniper')
    })

    it('refuses control, invisible and direction characters in a username', async () => {
      for (const name of [
        'marlowe\u200b',
        'mar\u00adlowe',
        '\u202emarlowe',
        'mar\u2066lowe',
        'ma\u0007rlowe',
        'mar\ufefflowe',
        'mar\ue000lowe',
        'mar\u200dlowe',
      ]) {
        const reply = await register(name)
        assert.equal(reply.status, 422, JSON.stringify(name))
        assert.match(reply.body.detail[0].msg, /control, invisible or direction characters/)
      }
    })

    it('refuses names that mix scripts as look-alikes do, and welcomes a name in any one script, shown as typed', async () => {
      for (const name of ['juniреr', 'jupiтer', 'pαssword', 'Юпитерx']) {
        const reply = await register(name)
        assert.equal(reply.status, 422, name)
        assert.match(reply.body.detail[0].msg, /one script/)
      }
      for (const name of [
        'Юпитер',
        'Ζεύς',
        '木星',
        'ジュピター',
        '木星ちゃん',
        '목성',
        'Zoë-2',
        'José María',
        'مشتری',
        'Ｍａｒｓ',
      ]) {
        const reply = await register(name)
        assert.equal(reply.status, 200, `${name}: ${reply.text}`)
        assert.equal(reply.body.username, name, 'shown as typed')
      }
      assert.equal((await register('MARS')).status, 422, 'the fullwidth Ｍａｒｓ took mars')
    })

    it('costs one hash for an unknown user from the first login on, as for a wrong password', async (t) => {
      const { default: crypto } = await import('node:crypto')
      const { DUMMY_PASSWORD_HASH, hashPassword } = await import('../db.ts')
      assert.equal(
        DUMMY_PASSWORD_HASH.split('$').slice(0, 4).join('$'),
        (await hashPassword('x')).split('$').slice(0, 4).join('$'),
        'the same parameters as a real hash',
      )
      const scrypt = t.mock.method(crypto, 'scrypt')
      assert.equal((await form({ username: `nobody-${Math.random()}`, password: 'password' })).status, 401)
      assert.equal(scrypt.mock.callCount(), 1, 'an unknown user: one hash, the first time too')
      assert.equal((await form({ username: 'juniper', password: 'wrong' })).status, 401)
      assert.equal(scrypt.mock.callCount(), 2, 'a wrong password: one hash')
      assert.equal(scrypt.mock.calls[0].arguments[2], scrypt.mock.calls[1].arguments[2], 'of the same length')
      assert.deepEqual(scrypt.mock.calls[0].arguments[3], scrypt.mock.calls[1].arguments[3], 'with the same parameters')
    })
  })

  describe('limits', () => {
    /** The token form's login as sent from `ip`. */
    const loginFrom = (ip: string, username: string, password: string) => {
      const event = httpApiEvent({
        method: 'POST',
        path: '/auth/token',
        body: new URLSearchParams({ username, password }).toString(),
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      })
      event.requestContext.http.sourceIp = ip
      return send(event)
    }
    const hashes = async (t: { mock: { method: Function } }) => {
      const { default: crypto } = await import('node:crypto')
      return (t.mock.method(crypto, 'scrypt') as { mock: { callCount(): number } }).mock
    }
    /** Ends the account's wait now, as if it had passed. */
    const endWait = async (username: string) =>
      (await database()).all('UPDATE login_failures SET blocked_until = ? WHERE username_key = ?', [
        Date.now() - 1,
        username,
      ])

    it('gives an account 5 failed logins from any addresses, then waits of a minute doubling to 15, with 429 and no hash', async (t) => {
      const warned = t.mock.method(console, 'warn', () => {})
      const scrypt = await hashes(t)
      const ips = ['198.51.100.1', '198.51.100.2', '203.0.113.7']
      for (let i = 0; i < 5; i++)
        assert.equal((await loginFrom(ips[i % 3], 'reggie', `wrong-${i}`)).status, 401, `failure ${i + 1} of 5`)
      assert.equal(scrypt.callCount(), 5)
      for (const password of ['wrong-again', 'password']) {
        const reply = await loginFrom('192.0.2.99', 'REGGIE', password) // another address, the same account by its key
        assert.deepEqual(
          [reply.status, reply.body],
          [429, { detail: 'too many failed logins: try again later' }],
          `${password}, during the wait`,
        )
        assert.ok(
          Number(reply.headers['retry-after']) > 55 && Number(reply.headers['retry-after']) <= 60,
          reply.headers['retry-after'],
        )
      }
      assert.equal(scrypt.callCount(), 5, 'a 429 costs no hash')
      assert.equal((await loginFrom(ips[0], 'juniper', 'password')).status, 200, 'another account is not held')
      const waits = []
      for (let i = 0; i < 6; i++) {
        await endWait('reggie')
        assert.equal((await loginFrom(ips[0], 'reggie', 'still wrong')).status, 401)
        waits.push(Number((await loginFrom(ips[0], 'reggie', 'password')).headers['retry-after']))
      }
      assert.deepEqual(
        waits.map((w) => Math.round(w / 60)),
        [2, 4, 8, 15, 15, 15],
        'minutes, doubling to 15',
      )
      await endWait('reggie')
      assert.equal((await loginFrom(ips[0], 'reggie', 'password')).status, 200, 'the right password after the wait')
      assert.equal((await loginFrom(ips[0], 'reggie', 'wrong')).status, 401)
      assert.equal((await loginFrom(ips[0], 'reggie', 'password')).status, 200, 'and the count started again')
      const lines = warned.mock.calls.map((c) => JSON.stringify(c.arguments))
      assert.ok(
        lines.includes('[{"what":"failed login","username":"reggie","source":"198.51.100.2"}]'),
        lines.join('\n'),
      )
      assert.ok(
        lines.every((line) => !/wrong|password/.test(line)),
        'never the password',
      )
    })

    it('limits failed logins and registrations per source address, never by a header, with 429 and no hash', async (t) => {
      t.mock.method(console, 'warn', () => {})
      for (const username of ['reggie', 'digby', 'nobody'])
        assert.equal((await loginFrom('198.51.100.9', username, 'wrong')).status, 401)
      const db = await database()
      const window = Date.now() - (Date.now() % ADDRESS_WINDOW_MS)
      const counted = await db.values(
        'SELECT kind, CAST(n AS INTEGER) FROM address_counts WHERE address = ? AND window_start = ?',
        ['198.51.100.9', window],
      )
      assert.deepEqual(
        counted.map(([kind, n]) => [kind, Number(n)]),
        [['failed_login', 3]],
      )
      await db.all('UPDATE address_counts SET n = ? WHERE address = ?', [ADDRESS_LIMITS.failed_login, '198.51.100.9'])
      const scrypt = await hashes(t)
      const held = await loginFrom('198.51.100.9', 'gertrude', 'password')
      assert.deepEqual([held.status, held.body.detail], [429, 'too many failed logins: try again later'])
      assert.ok(Number(held.headers['retry-after']) <= 900)
      const forwarded = httpApiEvent({
        method: 'POST',
        path: '/auth/token',
        body: 'username=gertrude&password=password',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': '192.0.2.50' },
      })
      forwarded.requestContext.http.sourceIp = '198.51.100.9'
      assert.equal((await send(forwarded)).status, 429, 'X-Forwarded-For changes nothing')
      assert.equal(scrypt.callCount(), 0)
      assert.equal((await loginFrom('198.51.100.10', 'gertrude', 'password')).status, 200, 'another address logs in')

      const register = (ip: string, n: number) => {
        const event = httpApiEvent({
          method: 'POST',
          path: '/auth/registration',
          body: JSON.stringify({ username: `pat${n}`, email: `pat${n}@example.com`, password: 'kestrel harbour' }),
          headers: { 'content-type': 'application/json' },
        })
        event.requestContext.http.sourceIp = ip
        return send(event)
      }
      assert.equal((await register('198.51.100.20', 1)).status, 200)
      await db.all('UPDATE address_counts SET n = ? WHERE address = ? AND kind = ?', [
        ADDRESS_LIMITS.registration,
        '198.51.100.20',
        'registration',
      ])
      const hashed = scrypt.callCount()
      const refused = await register('198.51.100.20', 2)
      assert.deepEqual([refused.status, refused.body.detail], [429, 'too many registrations: try again later'])
      assert.equal(scrypt.callCount(), hashed, 'no hash')
      assert.equal((await register('198.51.100.21', 3)).status, 200, 'another address registers')
      assert.ok(ADDRESS_LIMITS.failed_login >= 20 && ADDRESS_LIMITS.registration >= 20, "room for a shelter's office")
    })

    it('costs at most one password hash per request on every auth route, whatever it is sent', async (t) => {
      t.mock.method(console, 'warn', () => {})
      const token = await login('digby')
      const scrypt = await hashes(t)
      const cost = async (what: string, reply: Promise<Reply>, status: number) => {
        const before = scrypt.callCount()
        assert.equal((await reply).status, status, what)
        return [what, scrypt.callCount() - before]
      }
      const change = (current: string, next: string) =>
        call({
          method: 'PUT',
          path: '/users/me/password',
          body: JSON.stringify({ current_password: current, new_password: next }),
          headers: { 'content-type': 'application/json', ...bearer(token) },
        })
      const costs = [
        await cost('login', form({ username: 'digby', password: 'password' }), 200),
        await cost('wrong password', form({ username: 'digby', password: 'wrong' }), 401),
        await cost('unknown user', form({ username: 'nobody-at-all', password: 'password' }), 401),
        await cost('long password', form({ username: 'digby', password: 'x'.repeat(60_000) }), 422),
        await cost(
          'registration',
          json('POST', '/auth/registration', {
            username: 'pat',
            email: 'pat@example.com',
            password: 'kestrel harbour',
          }),
          200,
        ),
        await cost(
          'common password',
          json('POST', '/auth/registration', { username: 'pat2', email: 'pat2@example.com', password: 'password1' }),
          422,
        ),
        await cost(
          'taken name',
          json('POST', '/auth/registration', {
            username: 'pat',
            email: 'pat3@example.com',
            password: 'kestrel harbour',
          }),
          422,
        ),
        await cost('change, wrong current', change('wrong', 'osprey lighthouse'), 403),
        await cost(
          'a body too large',
          json('POST', '/auth/registration', {
            username: 'x'.repeat(70_000),
            email: 'x@example.com',
            password: 'kestrel harbour',
          }),
          413,
        ),
      ]
      for (let i = 0; i < 3; i++) await form({ username: 'digby', password: 'wrong' })
      costs.push(await cost('throttled', form({ username: 'digby', password: 'password' }), 429))
      costs.push(await cost('throttled change', change('password', 'osprey lighthouse'), 429))
      assert.deepEqual(
        costs.filter(([, n]) => (n as number) > 1),
        [],
        JSON.stringify(costs),
      )
      assert.deepEqual(
        costs.map(([, n]) => n),
        [1, 1, 1, 0, 1, 0, 1, 1, 0, 0, 0],
      )
    })

    it('stops checking a field at its first length failure: a long name is not read for its scripts or characters', async (t) => {
      const { default: crypto } = await import('node:crypto')
      const scrypt = t.mock.method(crypto, 'scrypt')
      const reply = await json('POST', '/auth/registration', {
        username: 'аa\u200b'.repeat(10_000),
        email: 'x@example.com',
        password: 'kestrel harbour',
      })
      assert.equal(reply.status, 422)
      assert.deepEqual(
        reply.body.detail.map((d: any) => [d.loc.join('.'), d.type]),
        [['body.username', 'too_big']],
        'the length alone',
      )
      const short = await json('POST', '/auth/registration', {
        username: 'аa\u200b',
        email: 'x@example.com',
        password: 'kestrel harbour',
      })
      assert.equal(short.body.detail.length, 2, 'a short one gets both checks: invisible characters, and scripts')
      assert.equal(scrypt.mock.callCount(), 0)
    })

    it('refuses a body over 64 KB with 413 before parsing it, plain or base64-encoded', async () => {
      const token = await login()
      const big = `{"name": "${'x'.repeat(64 * 1024)}", "age": 1, "kind": "dog"}`
      const plain = await json('POST', '/animals', big, token)
      assert.deepEqual([plain.status, plain.body], [413, { detail: 'request body too large' }])
      assert.equal(
        (await json('POST', '/animals', `${'{'.repeat(70_000)}`, token)).status,
        413,
        'not parsed: malformed, still 413',
      )
      const base64 = await send(
        httpApiEvent({
          method: 'POST',
          path: '/animals',
          body: big,
          base64: true,
          headers: { 'content-type': 'application/json', ...bearer(token) },
        }),
      )
      assert.equal(base64.status, 413)
      const encodedHuge = {
        ...httpApiEvent({
          method: 'POST',
          path: '/animals',
          headers: { 'content-type': 'application/json', ...bearer(token) },
        }),
        body: 'A'.repeat(10_000_000),
        isBase64Encoded: true,
      }
      assert.equal((await send(encodedHuge)).status, 413, '10 MB of base64, refused before it is decoded')
      const fits = await json(
        'POST',
        '/animals',
        `{"name": "rex", "age": 1, "kind": "dog", "pad": "${'x'.repeat(60 * 1024)}"}`,
        token,
      )
      assert.equal(fits.status, 200, 'under 64 KB: taken')
    })

    it('takes JSON only as application/json and the token form only as a form, else 415', async () => {
      const token = await login()
      const post = (type: string | undefined, body: string) =>
        call({
          method: 'POST',
          path: '/animals',
          body,
          headers: { ...(type ? { 'content-type': type } : {}), ...bearer(token) },
        })
      const body = '{"name": "rex", "age": 1, "kind": "dog"}'
      for (const type of [
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        undefined,
        'application/json-patch+json',
      ]) {
        const reply = await post(type, body)
        assert.deepEqual([reply.status, reply.body], [415, { detail: 'Unsupported Media Type' }], String(type))
      }
      assert.equal((await post('Application/JSON; charset=utf-8', body)).status, 200)
      const asText = await call({
        method: 'POST',
        path: '/auth/token',
        body: 'username=juniper&password=password',
        headers: { 'content-type': 'text/plain' },
      })
      assert.equal(asText.status, 415)
      assert.equal(
        (await get('/animals', '', { 'content-type': 'text/plain' })).status,
        200,
        'a route without a body takes any',
      )
    })

    it('sends the safe headers on every answer, errors and preflights included; a CSP on the pages; HSTS on Lambda', async (t) => {
      t.mock.method(console, 'error', () => {})
      t.mock.method(console, 'warn', () => {})
      const token = await login('reggie')
      const replies: [string, Reply][] = [
        ['200', await get('/animals')],
        [
          '204',
          await call({ method: 'DELETE', path: `/users/${userId('felix')}`, headers: bearer(await login('felix')) }),
        ],
        ['401', await get('/users/me')],
        ['403', await getAs(token, '/users')],
        ['404', await get('/nowhere')],
        ['405', await call({ method: 'PATCH', path: '/animals/1' })],
        ['413', await json('POST', '/animals', 'x'.repeat(70_000), token)],
        [
          '415',
          await call({
            method: 'POST',
            path: '/auth/registration',
            body: '{}',
            headers: { 'content-type': 'text/plain' },
          }),
        ],
        ['422', await get('/animals', 'sort=weight')],
        ['400', await send({ hello: 'world' } as unknown as APIGatewayProxyEvent)],
        [
          'preflight 204',
          await call({
            method: 'OPTIONS',
            path: '/animals',
            headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST' },
          }),
        ],
        [
          'preflight 400',
          await call({
            method: 'OPTIONS',
            path: '/animals',
            headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
          }),
        ],
        ['HTML', await get('/docs')],
      ]
      for (let i = 0; i < 5; i++) await form({ username: 'digby', password: 'wrong' })
      replies.push(['429', await form({ username: 'digby', password: 'password' })])
      for (const [what, reply] of replies) {
        assert.equal(reply.headers['x-content-type-options'], 'nosniff', what)
        assert.equal(reply.headers['referrer-policy'], 'no-referrer', what)
        assert.equal(reply.headers['x-frame-options'], 'DENY', what)
        assert.equal(reply.headers['strict-transport-security'], undefined, `${what}: not outside Lambda`)
      }
      assert.deepEqual(
        replies.map(([what, r]) => [what, String(r.status)]).filter(([what, s]) => /^\d+$/.test(what) && what !== s),
        [],
      )
      for (const page of ['/', '/docs']) {
        const csp = (await get(page)).headers['content-security-policy']
        assert.match(csp, /frame-ancestors 'none'/, page)
        assert.match(csp, /default-src 'none'/, page)
        assert.match(
          csp,
          /script-src https:\/\/cdn\.jsdelivr\.net\/npm\/swagger-ui-dist@[\d.]+\/ 'sha256-[A-Za-z0-9+/]+='/,
          page,
        )
        assert.doesNotMatch(csp, /unsafe/, page)
      }
      assert.equal((await get('/animals')).headers['content-security-policy'], undefined, 'JSON answers need none')
      process.env.AWS_LAMBDA_FUNCTION_NAME = 'buddy-system'
      t.mock.method(console, 'log', () => {})
      try {
        for (const reply of [await get('/animals'), await get('/nowhere'), await get('/docs')]) {
          assert.equal(reply.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains')
        }
      } finally {
        delete process.env.AWS_LAMBDA_FUNCTION_NAME
      }
    })

    it('answers HEAD on a GET route as GET does, without the body', async () => {
      for (const path of ['/docs', '/animals', '/animals/1', '/openapi.json']) {
        const [head, full] = [await call({ method: 'HEAD', path }), await get(path)]
        assert.deepEqual([head.status, head.text], [200, ''], path)
        assert.equal(head.headers['content-type'], full.headers['content-type'], path)
      }
      assert.equal((await call({ method: 'HEAD', path: '/animals/999' })).status, 404)
      assert.equal((await call({ method: 'HEAD', path: '/auth/token' })).status, 405)
    })

    it("refuses control, invisible and direction characters in an animal's name and kind", async () => {
      const token = await login()
      for (const [field, value] of [
        ['name', 'Re\u202ex'],
        ['name', 'Rex\u200b'],
        ['kind', 'd\u0007og'],
        ['kind', 'ca\u2066t'],
      ]) {
        const created = await json('POST', '/animals', { name: 'Rex', age: 1, kind: 'dog', [field]: value }, token)
        assert.deepEqual([created.status, created.body.detail[0].loc], [422, ['body', field]], JSON.stringify(value))
        assert.equal((await json('PUT', '/animals/1', { [field]: value }, token)).status, 422)
      }
      assert.equal(
        (await json('POST', '/animals', { name: 'Mirlo', age: 1, kind: 'pájaro' }, token)).status,
        200,
        'any script, with accents',
      )
    })

    it("pages a user's pets and fosters as /animals: limit, offset, and the count of all", async () => {
      const token = await login()
      const adopter = userId(sample.adoptions[0].user_id)
      for (let i = 0; i < 3; i++) {
        const { body } = await json('POST', '/animals', { name: `pet${i}`, age: 1, kind: 'cat' }, token)
        assert.equal(
          (await json('PUT', `/animals/${body.animal.id}`, { adopter_id: adopter, adoption_date: today() }, token))
            .status,
          200,
        )
      }
      const all = (await getAs(token, `/users/${adopter}/pets`)).body
      assert.ok(all.meta.count >= 4)
      assert.deepEqual(all.meta, { count: all.animals.length, limit: 100, offset: 0 })
      const page = (await getAs(token, `/users/${adopter}/pets`, 'limit=2&offset=1')).body
      assert.deepEqual(page.meta, { count: all.meta.count, limit: 2, offset: 1 })
      assert.deepEqual(
        page.animals.map((a: any) => a.id),
        all.animals.slice(1, 3).map((a: any) => a.id),
      )
      const fosterer = userId(sample.fosters[0].user_id)
      const fosters = (await getAs(token, `/users/${fosterer}/fosters`, 'limit=1&offset=0')).body
      assert.deepEqual([fosters.meta.limit, fosters.meta.offset, fosters.fosters.length], [1, 0, 1])
      assert.equal(fosters.meta.count, sample.fosters.filter((f) => f.user_id === sample.fosters[0].user_id).length)
      assert.equal((await getAs(token, `/users/${adopter}/pets`, 'limit=1001')).status, 422)
    })

    it('takes an adoption only with adopter and date together, dated from the intake to today (UTC)', async () => {
      const token = await login()
      const put = (body: object) => json('PUT', '/animals/3', body, token)
      const { animal } = (await get('/animals/3')).body
      assert.equal(animal.adopter_id, null, 'animal 3 is not adopted in the sample')
      const cases: [object, string][] = [
        [{ adopter_id: 2 }, 'adoption_date'],
        [{ adoption_date: today() }, 'adopter_id'],
        [{ adopter_id: 2, adoption_date: '9999-01-01' }, 'adoption_date'],
        [{ adopter_id: 2, adoption_date: '1999-01-01' }, 'adoption_date'],
      ]
      for (const [body, field] of cases) {
        const reply = await put(body)
        assert.deepEqual([reply.status, reply.body.detail?.[0]?.loc], [422, ['body', field]], JSON.stringify(body))
      }
      const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10)
      assert.equal((await put({ adopter_id: 2, adoption_date: tomorrow })).status, 422, 'tomorrow')
      assert.equal(
        (await put({ adopter_id: 2, adoption_date: animal.intake_date })).status,
        200,
        'on the day it came in',
      )
      assert.equal((await put({ adoption_date: null })).status, 422, 'a date taken from an adopter who stays')
      const cleared = await put({ adopter_id: null })
      assert.deepEqual(
        [cleared.status, cleared.body.animal.adopter_id, cleared.body.animal.adoption_date],
        [200, null, null],
        'no adopter: no date',
      )
    })

    it('clears, when migrating, the adoptions that break the rule, and says how many', async () => {
      const config = await fixture.empty()
      const db = await openDatabase(config)
      try {
        await db.all('DELETE FROM schema_migrations WHERE version >= 4')
        await db.exec('DROP TABLE login_failures; DROP TABLE address_counts; DROP TABLE common_passwords')
        await db.all(
          "INSERT INTO users (username, username_key, email, email_key, password_hash, created_at) VALUES ('u', 'u', 'u@x', 'u@x', 'none', '2024-01-01T00:00:00')",
        )
        const [[user]] = await db.values('SELECT id FROM users')
        const rows = [
          [user, '2024-01-05', '2024-01-01'],
          [null, '2024-01-05', '2024-01-01'],
          [user, null, '2024-01-01'],
          [user, '2023-12-01', '2024-01-01'],
          [user, '9999-01-01', '2024-01-01'],
        ]
        for (const [adopter, date, intake] of rows) {
          await db.all(
            "INSERT INTO animals (name, age, kind, intake_date, adopter_id, adoption_date) VALUES ('a', 1, 'cat', ?, ?, ?)",
            [intake, adopter, date],
          )
        }
        const result = await migrate(db)
        assert.deepEqual(
          result.applied.map((a) => a.split(' ')[0]),
          ['4', '5'],
        )
        assert.deepEqual(result.notes, [
          'cleared the adoption of 4 animals whose adopter and date did not go together, or whose date was before their intake or after today',
        ])
        const left = await db.values('SELECT adopter_id, adoption_date FROM animals ORDER BY id')
        assert.deepEqual(
          left.map(([a, d]) => [a === null ? null : Number(a), d === null ? null : String(d).slice(0, 10)]),
          [
            [Number(user), '2024-01-05'],
            [null, null],
            [null, null],
            [null, null],
            [null, null],
          ],
        )
      } finally {
        await db.close()
      }
    })

    it('allows no cross-origin browser calls on Lambda unless CORS_ORIGINS says so; locally the React dev server', async (t) => {
      t.mock.method(console, 'log', () => {})
      const saved = process.env.CORS_ORIGINS
      delete process.env.CORS_ORIGINS
      const asked = () => call({ method: 'GET', path: '/animals', headers: { origin: 'http://localhost:5173' } })
      try {
        assert.equal((await asked()).headers['access-control-allow-origin'], 'http://localhost:5173')
        process.env.AWS_LAMBDA_FUNCTION_NAME = 'buddy-system'
        assert.equal(
          (await asked()).headers['access-control-allow-origin'],
          undefined,
          'a deployment told nothing trusts no origin',
        )
      } finally {
        delete process.env.AWS_LAMBDA_FUNCTION_NAME
        if (saved !== undefined) process.env.CORS_ORIGINS = saved
      }
    })
  })

  describe('seeding', () => {
    it('seeds an empty database in one run and adds nothing on a second', async () => {
      const db = await openDatabase(await fixture.empty())
      try {
        const first = await seed(db, 'local')
        assert.equal(first.sample, 'loaded')
        assert.deepEqual(
          { ...first, loaded_at: undefined },
          {
            sample: 'loaded',
            loaded_at: undefined,
            user_count: 8,
            animal_count: 16,
            foster_count: 8,
            adoption_count: 7,
            added: { users: 8, animals: 16, fosters: 8, adoptions: 7 },
          },
        )
        assert.match(first.loaded_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/)
        const second = await seed(db, 'local')
        assert.deepEqual(
          [second.sample, second.loaded_at, second.added],
          ['loaded before', first.loaded_at, { users: 0, animals: 0, fosters: 0, adoptions: 0 }],
        )
        const [{ n }] = await db.all<{ n: number }>('SELECT CAST(count(*) AS INTEGER) AS n FROM animals')
        assert.equal(Number(n), 16)
      } finally {
        await db.close()
      }
    })

    it('never brings back a sample animal or user that was deleted, nor their fosters', async () => {
      const db = await openDatabase(await fixture.empty())
      try {
        await seed(db, 'local')
        await db.all("DELETE FROM users WHERE username = 'juniper'")
        await db.all('DELETE FROM animals WHERE id = 1')
        const again = await seed(db, 'local')
        assert.equal(again.sample, 'loaded before')
        assert.deepEqual(await db.all("SELECT id FROM users WHERE username = 'juniper'"), [])
        assert.deepEqual(await db.all('SELECT id FROM animals WHERE id = 1'), [])
        const [[animals]] = await db.values('SELECT count(*) FROM animals')
        assert.equal(Number(animals), 15)
      } finally {
        await db.close()
      }
    })

    it('loads no sample into a database that holds rows of its own, and says so', async () => {
      const db = await openDatabase(await fixture.empty())
      try {
        await db.all("INSERT INTO animals (name, age, kind, intake_date) VALUES ('Mine', 1, 'cat', '2024-01-01')")
        const result = await seed(db, 'local')
        assert.deepEqual(
          [result.sample, result.added],
          ['not loaded', { users: 0, animals: 0, fosters: 0, adoptions: 0 }],
        )
        await db.all('DELETE FROM animals')
        assert.equal((await seed(db, 'local')).sample, 'loaded before', 'recorded: a later run does not load it either')
        assert.deepEqual(await db.all('SELECT id FROM animals'), [])
      } finally {
        await db.close()
      }
    })

    it('applies each migration once, recorded with its version, and adopts a database made before migrations', async () => {
      const db = await openDatabase(await fixture.empty({ schema: false }))
      try {
        const first = await migrate(db)
        assert.deepEqual([first.from, first.to, first.applied.length], [0, SCHEMA_VERSION, SCHEMA_VERSION])
        assert.deepEqual(await migrate(db), { from: SCHEMA_VERSION, to: SCHEMA_VERSION, applied: [], notes: [] })
        const rows = await db.all<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')
        assert.deepEqual(
          rows.map((r) => Number(r.version)),
          Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1),
        )
      } finally {
        await db.close()
      }
      // A database made by the code before migrations: the first one's tables, animals, no counts, no schema_migrations.
      const old = await openDatabase(await fixture.empty({ schema: false }))
      try {
        await migrate(old, 1)
        await old.all(
          "INSERT INTO animals (name, age, kind, intake_date) VALUES ('a', 1, 'cat', '2024-01-01'), ('b', 2, 'dog', '2024-01-02')",
        )
        await old.all('DELETE FROM animal_intake_counts')
        await old.all('DROP TABLE schema_migrations')
        const adopted = await migrate(old)
        assert.deepEqual([adopted.from, adopted.to], [0, SCHEMA_VERSION])
        const page = await listAnimals(old, { sort: 'name', limit: 1, offset: 0 })
        assert.equal(page.count, 2, 'the per-day counts were made from the animals already there')
        assert.equal(
          (await listAnimals(old, { sort: 'name', intake_after: '2024-01-02', limit: 1, offset: 0 })).count,
          1,
        )
      } finally {
        await old.close()
      }
    })

    it('gives users of an older database their keys, and reports the names that clash instead of failing', async () => {
      const db = await openDatabase(await fixture.empty({ schema: false }))
      try {
        await migrate(db, 1)
        const add = (username: string, email: string) =>
          db.all(
            "INSERT INTO users (username, email, password_hash, created_at) VALUES (?, ?, 'x', '2024-01-01T00:00:00')",
            [username, email],
          )
        await add('juniper', 'juniper@cool.email')
        await add('Juniper', 'other@example.com')
        await add('ｊｕｎｉｐｅｒ', 'JUNIPER@cool.email')
        await add('marlowe', 'marlowe@example.com')
        const result = await migrate(db)
        assert.deepEqual(result.notes, [
          'user 2\'s username "Juniper" clashes with user 1\'s: it logs in by its exact name only; rename one of them',
          'user 3\'s username "ｊｕｎｉｐｅｒ" clashes with user 1\'s: it logs in by its exact name only; rename one of them',
          'user 3\'s email "JUNIPER@cool.email" clashes with user 1\'s: it logs in by its exact email only; rename one of them',
        ])
        const keys = await db.values('SELECT id, username_key FROM users ORDER BY id')
        assert.deepEqual(
          keys.map(([id, key]) => [Number(id), key]),
          [
            [1, 'juniper'],
            [2, 'juniper#2'],
            [3, 'juniper#3'],
            [4, 'marlowe'],
          ],
        )
      } finally {
        await db.close()
      }
    })

    it('answers 503 where the schema is missing (what to do goes to the log), creates none, and serves once it is migrated', async (t) => {
      const config = await fixture.empty({ schema: false })
      pointAt(config)
      await closeDatabase()
      const logged = t.mock.method(console, 'error', () => {})
      for (const attempt of [1, 2]) {
        const reply = await get('/animals')
        assert.equal(reply.status, 503, `attempt ${attempt}: ${reply.text}`)
        assert.equal(reply.headers['retry-after'], '60')
        assert.deepEqual(
          reply.body,
          { detail: 'Service Unavailable' },
          'what is wrong, and what to do, goes to the log only',
        )
        assert.match(
          (logged.mock.calls.at(-1)!.arguments[0] as any).cause,
          /The database has no schema yet: deploy again \(tsx deploy\.ts efs\|rds\), or run `tsx seed\.ts`/,
        )
      }
      const db = await openDatabase(config)
      try {
        const tables =
          db.kind === 'sqlite'
            ? await db.all("SELECT name FROM sqlite_master WHERE type = 'table'")
            : await db.all("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        assert.deepEqual(tables, [], 'the API ran no DDL')
        await migrate(db)
      } finally {
        await db.close()
      }
      // As a database is when the new release's migration has not run yet: the version before.
      const older = await openDatabase(config)
      const [latest] = await older.all('SELECT * FROM schema_migrations WHERE version = ?', [SCHEMA_VERSION])
      await older.all('DELETE FROM schema_migrations WHERE version = ?', [SCHEMA_VERSION])
      await older.close()
      const behind = await get('/animals')
      assert.deepEqual([behind.status, behind.body], [503, { detail: 'Service Unavailable' }])
      assert.match(
        (logged.mock.calls.at(-1)!.arguments[0] as any).cause,
        new RegExp(
          `The database schema is at version ${SCHEMA_VERSION - 1} and this release needs ${SCHEMA_VERSION}: deploy again`,
        ),
      )
      const again = await openDatabase(config)
      await again.all(
        'INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)',
        Object.values(latest),
      )
      await again.close()
      const served = await get('/animals')
      assert.equal(served.status, 200, 'the same process serves once the schema is there: no restart')
      assert.deepEqual(served.body.meta, { count: 0, limit: 100, offset: 0 })
    })

    it('keeps the per-day counts right through bulk inserts, date changes and deletes', async () => {
      const db = await openDatabase(await fixture.empty())
      try {
        await db.all(`INSERT INTO animals (name, age, kind, intake_date) VALUES
          ('a', 1, 'cat', '2024-01-01'), ('b', 1, 'cat', '2024-01-01'), ('c', 1, 'cat', '2024-01-02'), ('d', 1, 'cat', '2024-01-03')`)
        await db.all("UPDATE animals SET intake_date = '2024-01-03' WHERE name IN ('a', 'c')")
        await db.all('UPDATE animals SET age = 2')
        await db.all("DELETE FROM animals WHERE name = 'd'")
        const counted = async (from: string, to: string) =>
          (await listAnimals(db, { sort: 'name', intake_after: from, intake_before: to, limit: 1, offset: 0 })).count
        const actual = async (from: string, to: string) =>
          Number(
            (
              await db.all<{ n: number }>(
                'SELECT count(*) AS n FROM animals WHERE intake_date >= ? AND intake_date <= ?',
                [from, to],
              )
            )[0].n,
          )
        for (const [from, to] of [
          ['2024-01-01', '2024-01-01'],
          ['2024-01-02', '2024-01-02'],
          ['2024-01-03', '2024-01-03'],
          ['2024-01-01', '2024-12-31'],
        ]) {
          assert.equal(await counted(from, to), await actual(from, to), `${from}..${to}`)
        }
        assert.equal(await counted('2024-01-01', '2024-12-31'), 3)
      } finally {
        await db.close()
      }
    })

    it('adds nothing at all when the data is broken halfway', async () => {
      const db = await openDatabase(await fixture.empty())
      try {
        const broken = structuredClone(sample)
        broken.fosters.push({
          user_id: 'juniper',
          animal_id: 'no-such-animal',
          start_date: '2024-01-01',
          end_date: null,
        })
        await assert.rejects(seed(db, 'local', broken), /fake_db.json refers to animal no-such-animal/)
        assert.deepEqual(await db.all('SELECT id FROM users'), [])
        assert.deepEqual(await db.all('SELECT id FROM animals'), [])
      } finally {
        await db.close()
      }
    })

    it("gives the sample's users no usable password where the seeder function seeds a deployment, and makes nobody staff", async (t) => {
      t.mock.method(console, 'log', () => {})
      t.mock.method(console, 'warn', () => {}) // each failed login's line
      pointAt(await fixture.empty({ schema: false }))
      await closeDatabase()
      const seeded = await seedHandler()
      assert.equal(seeded.task, 'set up')
      if (seeded.task === 'set up') assert.deepEqual([seeded.seed.sample, seeded.staff], ['loaded', []])
      const { default: crypto } = await import('node:crypto')
      const scrypt = t.mock.method(crypto, 'scrypt')
      for (const username of sampleUsers) {
        for (const password of ['password', 'none', `${username}`]) {
          const reply = await form({ username, password })
          assert.equal(reply.status, 401, `${username} with ${password}`)
        }
      }
      assert.equal(
        scrypt.mock.callCount(),
        sampleUsers.length * 3,
        'each refusal costs one hash, as a wrong password does',
      )
      const [[usable]] = await (
        await database()
      ).values("SELECT COUNT(*) FROM users WHERE password_hash LIKE 'scrypt$%'")
      assert.equal(Number(usable), 0, 'no user has a password hash at all')
    })

    it('grants and revokes staff through the seeder function, by name, saying what it did; an unknown name changes nothing', async (t) => {
      t.mock.method(console, 'log', () => {})
      t.mock.method(console, 'error', () => {})
      const reggie = await login('reggie')
      const create = () => json('POST', '/animals', { name: 'rex', age: 3, kind: 'dog' }, reggie)
      assert.equal((await create()).status, 403)
      const granted = await seedHandler({ staff: { username: 'REGGIE' } })
      assert.deepEqual(granted, {
        task: 'staff',
        summary: 'reggie is staff now; staff: juniper, reggie',
        username: 'reggie',
        change: 'granted',
        staff: ['juniper', 'reggie'],
      })
      assert.equal((await create()).status, 200, 'the same token, staff now')
      const again = await seedHandler({ staff: { username: 'reggie' } })
      assert.equal(again.task === 'staff' && again.change, 'unchanged')
      const revoked = await seedHandler({ staff: { username: 'reggie', revoke: true } })
      assert.deepEqual(revoked, {
        task: 'staff',
        summary: 'reggie is no longer staff; staff: juniper',
        username: 'reggie',
        change: 'revoked',
        staff: ['juniper'],
      })
      assert.equal((await create()).status, 403, 'checked on every request, not kept in the token')
      // A failure is thrown, for Lambda to report as a FunctionError with the error's name as its errorType.
      await assert.rejects(seedHandler({ staff: { username: 'nobody' } }), {
        name: 'UnknownUser',
        message: /there is no user named "nobody" in .*: nothing changed/,
      })
      await assert.rejects(seedHandler({ staff: { username: '' } }), {
        name: 'Error',
        message: /the username is missing/,
      })
      const listed = await seedHandler({ staff: {} })
      assert.deepEqual(
        listed,
        { task: 'staff list', summary: 'staff: juniper', staff: ['juniper'] },
        'without a username: who is staff, and no change',
      )
    })

    it("answers the seeder function's invocation with the migrations and the counts, or with the error", async (t) => {
      t.mock.method(console, 'log', () => {})
      const ok = await seedHandler()
      assert.equal(ok.task, 'set up')
      if (ok.task !== 'set up') return
      assert.deepEqual(
        [ok.seed.sample, ok.seed.added],
        ['loaded before', { users: 0, animals: 0, fosters: 0, adoptions: 0 }],
      )
      assert.deepEqual(ok.schema, { from: SCHEMA_VERSION, to: SCHEMA_VERSION, applied: [], notes: [] })
      assert.match(
        ok.summary,
        new RegExp(`^schema at version ${SCHEMA_VERSION}; nothing added: the sample was loaded on `),
      )
      const saved = process.env.DB_LOCATION
      process.env.DB_LOCATION = 'floppy'
      t.mock.method(console, 'error', () => {})
      try {
        await assert.rejects(seedHandler(), /DB_LOCATION=floppy is not a database location/)
      } finally {
        process.env.DB_LOCATION = saved
      }
    })
  })
}

/** Points the API (database()) at this database, as the fixture does before each test. */
function pointAt(config: DbConfig) {
  if (config.kind === 'sqlite') process.env.DB_PATH = config.path
  else process.env.PG_DATABASE = config.database
}

function sampleAdopter(animalId: number): number | null {
  const key = Object.keys(sample.animals)[animalId - 1]
  const adoption = sample.adoptions.find((a) => a.animal_id === key)
  return adoption ? userId(adoption.user_id) : null
}
