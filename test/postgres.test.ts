// The whole API suite on a real PostgreSQL server that, like RDS, accepts only TLS connections.
// With CI=true a missing server is a failure; elsewhere the suite is skipped and says why.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import postgres from 'postgres'
import { closeDatabase, configFromEnv, database, openDatabase, type DbConfig } from '../db.ts'
import { httpApiEvent } from './events.ts'
import { freshDatabases } from './fixtures.ts'
import { startPostgres } from './postgres-server.ts'
import { handler as seeder, setUp } from '../seed.ts'
import { apiSuite } from './api-suite.ts'
import { run } from './cli.ts'

const { handler } = await import('../api.ts') // after fixtures.ts, which sets the JWT_KEY it reads
const server = await startPostgres()
if (typeof server === 'string' && process.env.CI === 'true') {
  throw new Error(`CI=true and the PostgreSQL suite cannot run: ${server}`)
}

describe('on PostgreSQL', { skip: typeof server === 'string' ? server : false }, () => {
  if (typeof server === 'string') return
  apiSuite(freshDatabases(server))

  const config = () =>
    configFromEnv({ ...server.env, DB_LOCATION: 'rds', PG_DATABASE: 'postgres' }) as Extract<
      DbConfig,
      { kind: 'postgres' }
    >

  const status = async (path = '/animals/1') => {
    const started = Date.now()
    const result = await handler(httpApiEvent({ path }))
    return {
      status: result.statusCode,
      retryAfter: result.headers?.['retry-after'],
      ms: Date.now() - started,
      body: result.body,
    }
  }

  it(
    'answers 503 with Retry-After while the server is down, never 500, and serves again once it is back',
    { timeout: 120_000 },
    async (t) => {
      t.mock.method(console, 'error', () => {})
      // A stream of 40 requests, reads and writes; the server stops (as RDS does when it restarts: connections
      // cut, new ones refused) after the 10th and starts again after the 25th.
      const login = await handler(
        httpApiEvent({
          method: 'POST',
          path: '/auth/token',
          body: 'username=juniper&password=password',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
        }),
      )
      const token = JSON.parse(login.body!).access_token
      const write = async () => {
        const started = Date.now()
        const result = await handler(
          httpApiEvent({
            method: 'POST',
            path: '/animals',
            body: '{"name": "Rex", "age": 1, "kind": "dog"}',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          }),
        )
        return {
          status: result.statusCode,
          retryAfter: result.headers?.['retry-after'],
          ms: Date.now() - started,
          body: result.body,
        }
      }
      const replies: (Awaited<ReturnType<typeof status>> & { i: number; up: boolean })[] = []
      let up = true
      try {
        for (let i = 1; i <= 40; i++) {
          if (i === 11) (server.halt!(), (up = false))
          if (i === 18) await closeDatabase() // a new container too, not only the one whose connection broke
          if (i === 26) (server.resume!(), (up = true))
          const reply = i % 3 === 0 ? await write() : await status(i % 2 ? '/animals' : '/animals/1')
          replies.push({ ...reply, i, up })
        }
      } finally {
        if (!up) server.resume!()
      }
      for (const reply of replies) {
        const what = `request ${reply.i} (database ${reply.up ? 'up' : 'down'}): ${reply.status} ${reply.body}`
        assert.ok(reply.status === 200 || reply.status === 503, what)
        if (reply.status === 503) {
          assert.equal(reply.retryAfter, '5', what)
          assert.deepEqual(JSON.parse(reply.body), { detail: 'Service Unavailable' }, what)
        }
        assert.ok(reply.ms < 15_000, `${what}: answered in ${reply.ms} ms, within the wait bound`)
        if (!reply.up) assert.equal(reply.status, 503, what)
      }
      const before = replies.filter((r) => r.i <= 10)
      assert.ok(
        before.every((r) => r.status === 200),
        'all served before the stop',
      )
      // Once it is back, the same process serves again with no restart: from the first request that finds it up
      // (the restarted server may refuse for the moments it takes to accept connections).
      const firstBack = replies.findIndex((r) => r.up && r.i > 25 && r.status === 200)
      assert.ok(firstBack >= 0, 'served again after the restart')
      assert.ok(
        replies.slice(firstBack).every((r) => r.status === 200),
        'and from then on',
      )
      const count = (list: typeof replies, code: number) => list.filter((r) => r.status === code).length
      const down = replies.filter((r) => !r.up)
      console.log(
        `PostgreSQL stopped during 40 requests: ${down.length} while down, ${count(down, 503)} of them 503 with Retry-After; ` +
          `after the restart ${count(
            replies.filter((r) => r.i > 25),
            200,
          )} of 15 served (${replies.filter((r) => r.i > 25 && r.status === 503).length} 503 while it came up); no 500`,
      )
    },
  )

  it(
    'answers 503 when max_connections is used up by other clients, and 200 once they leave',
    { timeout: 60_000 },
    async (t) => {
      t.mock.method(console, 'error', () => {})
      await closeDatabase()
      const cfg = config()
      const others = postgres({
        host: cfg.host,
        port: cfg.port,
        username: cfg.username,
        password: cfg.password,
        database: 'postgres',
        ssl: 'require',
        max: 200,
        onnotice: () => {},
      })
      const held: { release(): void }[] = []
      try {
        // Take connections until the server refuses one: "sorry, too many clients already" (53300).
        for (let i = 0; i < 200; i++) {
          const reserved = await others.reserve().catch((error) => error as Error & { code?: string })
          if (reserved instanceof Error) {
            assert.equal(reserved.code, '53300', String(reserved))
            break
          }
          held.push(reserved)
        }
        assert.ok(held.length > 10, `${held.length} connections held`)
        const full = await status()
        assert.equal(full.status, 503, full.body)
        assert.equal(full.retryAfter, '5')
        console.log(
          `max_connections used up by ${held.length} other connections: ${full.status} with Retry-After ${full.retryAfter}`,
        )
      } finally {
        for (const connection of held) connection.release()
        await others.end({ timeout: 5 })
      }
      assert.equal((await status()).status, 200)
    },
  )

  it(
    'holds failed logins across two processes on one PostgreSQL, as across Lambda containers, from two addresses',
    { timeout: 60_000 },
    async (t) => {
      t.mock.method(console, 'warn', () => {})
      const attempt = (password: string, ip: string) => {
        const event = httpApiEvent({
          method: 'POST',
          path: '/auth/token',
          body: `username=reggie&password=${password}`,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
        })
        event.requestContext.http.sourceIp = ip
        return event
      }
      // Another container: a process of its own, with its own connection, on the same database.
      const other = run('-e', { DB_LOCATION: 'rds', PG_DATABASE: process.env.PG_DATABASE }, [
        `(async () => {
      const { handler } = await import('./api.ts')
      const statuses = []
      const event = ${JSON.stringify(attempt('', '198.51.100.1'))}
      for (const password of ['wrong-1', 'wrong-2', 'wrong-3']) statuses.push((await handler({ ...event, body: event.body + password })).statusCode)
      console.log('statuses ' + JSON.stringify(statuses))
      process.exit(0)
    })()`,
      ])
      const [, first] = await other.waitFor(/statuses (\[.*\])/, 30_000)
      assert.deepEqual(JSON.parse(first), [401, 401, 401], other.output())
      for (const password of ['wrong-4', 'wrong-5'])
        assert.equal((await handler(attempt(password, '203.0.113.2'))).statusCode, 401)
      const held = await handler(attempt('password', '203.0.113.3'))
      assert.equal(held.statusCode, 429, 'the right password, from a third address, during the wait')
      const again = run('-e', { DB_LOCATION: 'rds', PG_DATABASE: process.env.PG_DATABASE }, [
        `(async () => {
      const { handler } = await import('./api.ts')
      console.log('status ' + (await handler(${JSON.stringify(attempt('password', '198.51.100.1'))})).statusCode)
      process.exit(0)
    })()`,
      ])
      assert.equal((await again.waitFor(/status (\d+)/, 30_000))[1], '429', 'and in the other process')
    },
  )

  it('answers 409 and 422, not 500, where PostgreSQL refuses a row for what it holds', async () => {
    const db = await database()
    await db.exec(
      'CREATE UNIQUE INDEX animals_one_name ON animals (name); ALTER TABLE animals ADD CONSTRAINT animals_young CHECK (age < 50)',
    )
    const token = JSON.parse(
      (
        await handler(
          httpApiEvent({
            method: 'POST',
            path: '/auth/token',
            body: 'username=juniper&password=password',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
          }),
        )
      ).body,
    ).access_token
    const post = async (body: object) =>
      handler(
        httpApiEvent({
          method: 'POST',
          path: '/animals',
          body: JSON.stringify(body),
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        }),
      )
    const name = (await status('/animals/1')).body && JSON.parse((await status('/animals/1')).body).animal.name
    const taken = await post({ name, age: 1, kind: 'cat' })
    assert.deepEqual(
      [taken.statusCode, JSON.parse(taken.body!).detail],
      [409, 'Conflict: a row with this value exists already'],
    )
    const old = await post({ name: 'Methuselah', age: 900, kind: 'tortoise' })
    assert.deepEqual(
      [old.statusCode, JSON.parse(old.body!).detail],
      [422, 'A value is outside what the database accepts'],
    )
  })

  /** Sets these variables in process.env (undefined unsets one); what it returns puts back what was there. */
  const setEnv = (values: Record<string, string | undefined>) => {
    const apply = (from: Record<string, string | undefined>) => {
      for (const [k, v] of Object.entries(from)) v === undefined ? delete process.env[k] : (process.env[k] = v)
    }
    const saved = Object.fromEntries(Object.keys(values).map((k) => [k, process.env[k]]))
    apply(values)
    return () => apply(saved)
  }
  /** AWS credentials of the tests that sign RDS tokens: the signer reads them from the environment first. */
  const credentials = {
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'secret-for-the-test',
    // A role's credentials, as Lambda gives them: with a session token, whose +, / and = the token escapes.
    AWS_SESSION_TOKEN: 'IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJH+MEUCIQ=',
    AWS_PROFILE: undefined,
  }

  it("connects with PG_AUTH=iam as its user, the RDS signer's token for the endpoint, port, user and region as password", async (t) => {
    // A local server cannot check an RDS token: the role's password is the token the signer gives for these four
    // values at a fixed moment (Date is mocked), so only that token logs in.
    t.mock.timers.enable({ apis: ['Date'], now: Date.parse('2026-12-01T12:00:00Z') })
    const restoreEnv = setEnv(credentials)
    const { host, port } = config()
    const user = `buddy_iam_${process.pid}`
    const iam = (region: string) =>
      configFromEnv({
        ...server.env,
        DB_LOCATION: 'rds',
        PG_AUTH: 'iam',
        PG_USERNAME: user,
        PG_PASSWORD: undefined,
        PG_DATABASE: 'postgres',
        AWS_REGION: region,
        ...credentials,
      })
    const { Signer } = await import('@aws-sdk/rds-signer')
    const token = await new Signer({
      hostname: host,
      port,
      username: user,
      region: 'eu-west-3',
      credentials: {
        accessKeyId: credentials.AWS_ACCESS_KEY_ID,
        secretAccessKey: credentials.AWS_SECRET_ACCESS_KEY,
        sessionToken: credentials.AWS_SESSION_TOKEN,
      },
    }).getAuthToken()
    assert.match(
      token,
      new RegExp(
        `^${host}:${port}/\\?Action=connect&DBUser=${user}&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261201%2Feu-west-3%2Frds-db%2Faws4_request&X-Amz-Date=20261201T120000Z&X-Amz-Expires=900&`,
      ),
    )
    const admin = await openDatabase(config())
    await admin.exec(`CREATE ROLE ${user} LOGIN PASSWORD '${token}'`)
    try {
      assert.equal(
        iam('eu-west-3').kind === 'postgres' && (iam('eu-west-3') as { password: string }).password,
        '',
        'no password in the configuration',
      )
      const db = await openDatabase(iam('eu-west-3'))
      assert.deepEqual(await db.values('SELECT current_user'), [[user]])
      await db.close()
      const elsewhere = await openDatabase(iam('eu-west-1')) // another region signs another token
      await assert.rejects(elsewhere.values('SELECT 1'), /password authentication failed/)
      await elsewhere.close()
      // Without credentials in the environment (Lambda always gives them), a clear error before any connection.
      assert.throws(
        () => configFromEnv({ ...server.env, DB_LOCATION: 'rds', PG_AUTH: 'iam', AWS_REGION: 'eu-west-3' }),
        /PG_AUTH=iam signs with the AWS credentials in the environment/,
      )
      assert.throws(
        () =>
          configFromEnv({ ...server.env, DB_LOCATION: 'rds', PG_AUTH: 'iam', AWS_REGION: '', AWS_DEFAULT_REGION: '' }),
        /PG_AUTH=iam needs AWS_REGION/,
      )
      assert.throws(
        () => configFromEnv({ ...server.env, DB_LOCATION: 'rds', PG_AUTH: 'kerberos' }),
        /PG_AUTH=kerberos is not supported/,
      )
    } finally {
      await admin.exec(`DROP ROLE ${user}`)
      await admin.close()
      restoreEnv()
    }
  })

  it('the seeder creates the API role with the master password of its invocation, hands it the tables, and logs in as it with IAM', async (t) => {
    t.mock.method(console, 'error', () => {})
    t.mock.timers.enable({ apis: ['Date'], now: Date.parse('2026-12-01T12:00:00Z') })
    let restoreEnv = () => {}
    const admin = await openDatabase(config())
    const role = `buddy_api_${process.pid}`
    const database = `buddy_role_${process.pid}`
    try {
      await admin.exec(
        `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN CREATE ROLE rds_iam; END IF; END $$`,
      ) // as RDS has it
      await admin.exec(`CREATE DATABASE ${database}`)
      // A deployment that used the master's password: its tables are the master's.
      const before = await openDatabase({ ...config(), database })
      await setUp(before, 'deployed')
      await before.close()
      restoreEnv = setEnv({
        ...server.env,
        ...credentials,
        DB_LOCATION: 'rds',
        PG_AUTH: 'iam',
        PG_USERNAME: role,
        PG_PASSWORD: undefined,
        PG_DATABASE: database,
        AWS_REGION: 'eu-west-3',
      })
      // No API role yet: the seeder says it needs the master's password.
      await assert.rejects(seeder(), { name: 'NeedsMaster' })

      // The token login that RDS would check, played by a password equal to the signer's token (as above).
      const { Signer } = await import('@aws-sdk/rds-signer')
      const { host, port } = config()
      const token = await new Signer({ hostname: host, port, username: role, region: 'eu-west-3' }).getAuthToken()
      await admin.exec(`CREATE ROLE ${role} LOGIN PASSWORD '${token}'`)
      const master = { username: server.env.PG_USERNAME, password: server.env.PG_PASSWORD }
      const done = await seeder({ master })
      assert.equal(done.task === 'set up' && done.seed.sample, 'loaded before')
      // What deploy.ts reserves the API's concurrency from: PostgreSQL's own figures.
      const [[max, reserved]] = await admin.values(
        "SELECT current_setting('max_connections'), current_setting('superuser_reserved_connections')",
      )
      assert.deepEqual(done.task === 'set up' && done.connections, { max: Number(max), reserved: Number(reserved) })
      const check = await openDatabase({ ...config(), database })
      const owners = await check.values("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
      assert.deepEqual(owners, [[role]], "every table is the API role's")
      const [[functionOwner]] = await check.values(
        "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'count_animal_intake'",
      )
      assert.equal(functionOwner, role)
      assert.deepEqual(await check.values(`SELECT pg_has_role('${role}', 'rds_iam', 'member')`), [[true]])
      await check.close()
      // It owns what it migrates: a change of schema as the API role, and the seeder again, without the master.
      const api = await openDatabase(configFromEnv())
      await api.exec('ALTER TABLE animals ADD COLUMN microchip TEXT; ALTER TABLE animals DROP COLUMN microchip')
      await api.close()
      assert.equal((await seeder()).task, 'set up')
      assert.equal(process.env.PG_PASSWORD, undefined)
    } finally {
      restoreEnv()
      await admin.exec(`DROP DATABASE IF EXISTS ${database}`)
      await admin.exec(`DROP ROLE IF EXISTS ${role}`)
      await admin.close()
    }
  })

  it('connects over TLS, verifying the server certificate', async () => {
    const db = await openDatabase(config())
    const [{ ssl }] = await db.all<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
    assert.equal(ssl, true)
    await db.close()
  })

  it(
    'is refused without TLS, as RDS refuses it',
    { skip: !server.env.PG_SSLROOTCERT && 'not our own cluster' },
    async () => {
      const plain = await openDatabase({ ...config(), ssl: 'disable' })
      await assert.rejects(plain.all('SELECT 1'), /no pg_hba.conf entry|SSL off|no encryption/)
      await plain.close()
    },
  )

  it(
    'refuses a server whose certificate it cannot verify under verify-full',
    { skip: !server.env.PG_SSLROOTCERT && 'not our own cluster' },
    async () => {
      const unverified = await openDatabase({ ...config(), caFile: undefined })
      await assert.rejects(unverified.all('SELECT 1'), /self[- ]signed|certificate/)
      await unverified.close()
    },
  )
})
