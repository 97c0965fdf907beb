// Copying a whole SQLite database into PostgreSQL (seed.ts's copyDatabase: the move from EFS to RDS, and
// `tsx seed.ts --from`), on SQLite files built through the API and the real TLS-only PostgreSQL server.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import postgres from 'postgres'
import { closeDatabase, configFromEnv, openDatabase, type Database, type DbConfig } from '../db.ts'
import {
  commonPasswordList,
  copyDatabase,
  CopyRefused,
  loadCommonPasswords,
  handler as seeder,
  SAMPLE_PASSWORD,
  setUp,
} from '../seed.ts'
import { run } from './cli.ts'
import { httpApiEvent } from './events.ts'
import { startPostgres } from './postgres-server.ts'

process.env.JWT_KEY ??= '0123456789abcdef'.repeat(4)
const { handler } = await import('../api.ts')
const server = await startPostgres()
if (typeof server === 'string' && process.env.CI === 'true')
  throw new Error(`CI=true and the copy tests cannot run: ${server}`)

describe('copying SQLite into PostgreSQL', { skip: typeof server === 'string' ? server : false }, () => {
  if (typeof server === 'string') return
  const dir = mkdtempSync(join(tmpdir(), 'buddy-copy-'))
  let admin: postgres.Sql
  let n = 0
  const pgConfig = (database: string) => configFromEnv({ ...server.env, DB_LOCATION: 'rds', PG_DATABASE: database })
  /** A new, empty PostgreSQL database: not even the schema. */
  const emptyPostgres = async () => {
    const name = `buddy_copy_${process.pid}_${++n}`
    await admin.unsafe(`CREATE DATABASE ${name}`)
    return pgConfig(name)
  }
  before(() => {
    const config = pgConfig('postgres') as Extract<DbConfig, { kind: 'postgres' }>
    const { host, port, username, password } = config
    admin = postgres({ host, port, username, password, database: 'postgres', ssl: 'require', onnotice: () => {} })
  })
  after(async () => {
    await closeDatabase()
    const names = await admin`SELECT datname FROM pg_database WHERE datname LIKE ${`buddy_copy_${process.pid}_%`}`
    for (const { datname } of names) await admin.unsafe(`DROP DATABASE ${datname}`)
    await admin.end()
    server.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  /** Points the API at this database, as a Lambda container configured for it. */
  const use = async (config: DbConfig) => {
    await closeDatabase()
    if (config.kind === 'sqlite') Object.assign(process.env, { DB_LOCATION: 'local', DB_PATH: config.path })
    else Object.assign(process.env, server.env, { DB_LOCATION: 'rds', PG_DATABASE: config.database })
  }
  const call = async (method: string, path: string, body?: unknown, token?: string) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (token) headers.authorization = `Bearer ${token}`
    const [route, query] = path.split('?')
    const result = await handler(
      httpApiEvent({
        method,
        path: route,
        query,
        body: body === undefined ? undefined : JSON.stringify(body),
        headers,
      }),
    )
    return { status: result.statusCode, body: result.body ? JSON.parse(result.body) : undefined }
  }
  const login = async (username: string, password = SAMPLE_PASSWORD) => {
    const result = await handler(
      httpApiEvent({
        method: 'POST',
        path: '/auth/token',
        body: `username=${username}&password=${password}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      }),
    )
    assert.equal(result.statusCode, 200, `login ${username}: ${result.body}`)
    return JSON.parse(result.body!).access_token as string
  }
  /** Everything the API shows of a database: every animal and user, each user's fosters and pets. */
  const everything = async () => {
    const token = await login('juniper')
    const {
      body: { animals },
    } = await call('GET', '/animals?sort=name&limit=1000')
    const listed = await call('GET', '/users?limit=1000', undefined, token)
    assert.equal(listed.status, 200, JSON.stringify(listed.body))
    const { users } = listed.body
    const perUser = []
    for (const user of users) {
      const [fosters, pets] = [
        await call('GET', `/users/${user.id}/fosters`, undefined, token),
        await call('GET', `/users/${user.id}/pets`, undefined, token),
      ]
      perUser.push({ id: user.id, fosters: fosters.body, pets: pets.body })
    }
    return { animals, users, perUser }
  }

  /** The sample, then changes through the API: a new user and animals, deletions that leave holes in the ids, an adoption. */
  const shelter = async () => {
    const config: DbConfig = { kind: 'sqlite', path: join(dir, `shelter-${++n}.db`), onNetworkFs: false }
    const db = await openDatabase(config)
    await setUp(db, 'local', await commonPasswordList())
    await db.close()
    await use(config)
    const registered = await call('POST', '/auth/registration', {
      username: 'rosalind',
      email: 'rosalind@example.com',
      password: 'a long password',
    })
    assert.equal(registered.status, 200, JSON.stringify(registered.body))
    const token = await login('juniper')
    const created = []
    for (const name of ['Pip', 'Moss', 'Quill', 'Fern']) {
      const { status, body } = await call(
        'POST',
        '/animals',
        { name, age: 3, kind: 'cat', vaccinated: name === 'Moss' },
        token,
      )
      assert.equal(status, 200)
      created.push(body.animal.id as number)
    }
    for (const id of [2, 7, created[1], created[3]])
      assert.equal((await call('DELETE', `/animals/${id}`, undefined, token)).status, 204)
    const adopted = await call(
      'PUT',
      `/animals/${created[2]}`,
      { adopter_id: registered.body.id, adoption_date: new Date().toISOString().slice(0, 10) },
      token,
    )
    assert.equal(adopted.status, 200, JSON.stringify(adopted.body))
    const felix = await login('felix')
    const me = (await call('GET', '/users/me', undefined, felix)).body.user
    assert.equal((await call('DELETE', `/users/${me.id}`, undefined, felix)).status, 204) // a hole in the users' ids too
    // The user with the largest id ever given leaves: their id must never come back, nor their token to life.
    const leaving = await call('POST', '/auth/registration', {
      username: 'tobias',
      email: 'tobias@example.com',
      password: 'a long password',
    })
    const leftToken = await login('tobias', 'a long password')
    assert.equal((await call('DELETE', `/users/${leaving.body.id}`, undefined, leftToken)).status, 204)
    await closeDatabase()
    return { config, largestAnimal: created[3], largestUser: leaving.body.id as number, leftToken }
  }

  it('copies every user, animal, foster and adoption with its id, holes kept, and a new animal gets a fresh id', async () => {
    const { config: sqlite, largestAnimal, largestUser, leftToken } = await shelter()
    await use(sqlite)
    const before = await everything()
    assert.ok(
      before.perUser.some((u) => u.fosters.fosters.length > 0) && before.perUser.some((u) => u.pets.animals.length > 0),
    )
    const target = await emptyPostgres()
    const [from, to] = [await openDatabase(sqlite), await openDatabase(target)]
    try {
      const result = await copyDatabase(from, to)
      assert.deepEqual(result, {
        status: 'copied',
        counts: { users: 8, animals: 16, fosters: before.perUser.reduce((k, u) => k + u.fosters.meta.count, 0) },
      })
    } finally {
      await from.close()
      await to.close()
    }
    await use(target)
    const copied = await everything()
    assert.deepEqual(copied, before)
    assert.ok(!copied.animals.some((a: { id: number }) => [2, 7].includes(a.id)), 'the holes are kept')
    await login('rosalind', 'a long password') // the password hashes came along
    const token = await login('juniper') // and who is staff
    const { body } = await call('POST', '/animals', { name: 'Newt', age: 1, kind: 'newt' }, token)
    assert.equal(body.animal.id, largestAnimal + 1, 'past the largest id the source ever gave, a deleted one included')

    // Once more: the target holds the copy already, and nothing is done.
    const [again, into] = [await openDatabase(sqlite), await openDatabase(target)]
    try {
      await into.all('DELETE FROM animals WHERE id = ?', [body.animal.id])
      assert.equal((await copyDatabase(again, into)).status, 'copied before')
      await loadCommonPasswords(into, await commonPasswordList()) // as the move's seeder does after its copy
    } finally {
      await again.close()
      await into.close()
    }
    const newcomer = await call('POST', '/auth/registration', {
      username: 'una',
      email: 'una@example.com',
      password: 'a long password',
    })
    assert.equal(newcomer.body.id, largestUser + 1, "a deleted user's id is not given again")
    assert.equal(
      (await call('GET', '/users/me', undefined, leftToken)).status,
      401,
      "and the deleted user's token names nobody",
    )
  })

  it('refuses a database with rows of its own and changes nothing in it', async () => {
    const { config: sqlite } = await shelter()
    const target = await emptyPostgres()
    const seeded = await openDatabase(target)
    await setUp(seeded, 'local', await commonPasswordList()) // the sample: rows of its own
    await seeded.all("UPDATE animals SET name = 'Renamed' WHERE id = 1")
    await seeded.close()
    await use(target)
    const before = await everything()
    const [from, to] = [await openDatabase(sqlite), await openDatabase(target)]
    try {
      await assert.rejects(copyDatabase(from, to), (error: Error) => {
        assert.ok(error instanceof CopyRefused)
        assert.match(
          error.message,
          /holds 8 users, 16 animals and 8 fosters that are not SQLite .*'s: nothing was copied/,
        )
        return true
      })
    } finally {
      await from.close()
      await to.close()
    }
    await use(target)
    assert.deepEqual(await everything(), before)
  })

  it('reads the whole source at one moment: every read of its rows inside one transaction (on SQLite, under its write lock)', async () => {
    const { config: sqlite } = await shelter()
    const source = await openDatabase(sqlite)
    // The real file, watched: each statement that reaches it, and whether a transaction was open around it.
    const reads: string[] = []
    let open = 0
    const watched = (db: Database): Database => ({
      ...db,
      label: db.label,
      kind: db.kind,
      all: (sql, params) => (reads.push(`${open ? 'in' : 'out'}: ${sql}`), db.all(sql, params)),
      values: (sql, params) => (reads.push(`${open ? 'in' : 'out'}: ${sql}`), db.values(sql, params)),
      exec: (sql) => db.exec(sql),
      close: () => db.close(),
      transaction: (fn) =>
        db.transaction(async (tx) => {
          open++
          try {
            return await fn(watched(tx))
          } finally {
            open--
          }
        }),
    })
    const target = await openDatabase(await emptyPostgres())
    try {
      await copyDatabase(watched(source), target)
      const rowReads = reads.filter((r) => /FROM (users|animals|fosters|sample_loads|sqlite_sequence)\b/.test(r))
      assert.ok(rowReads.length >= 5, reads.join('\n'))
      assert.deepEqual(
        rowReads.filter((r) => r.startsWith('out')),
        rowReads.filter((r) => r.startsWith('out') && /COUNT\(\*\) FROM animals$/.test(r)),
        'only the check that it is a buddy system database reads outside the transaction',
      )
    } finally {
      await source.close()
      await target.close()
    }
  })

  it('leaves the target empty when the copy fails halfway', async () => {
    const { config: sqlite } = await shelter()
    // A foster of an animal that is gone, as an old file with foreign keys off may hold: PostgreSQL refuses it,
    // after the users and animals went in.
    const broken = await openDatabase(sqlite)
    await broken.exec('PRAGMA foreign_keys = OFF')
    await broken.all("INSERT INTO fosters (animal_id, user_id, start_date) VALUES (9999, 1, '2026-01-01')")
    await broken.close()
    const target = await emptyPostgres()
    const [from, to] = [await openDatabase(sqlite), await openDatabase(target)]
    try {
      await assert.rejects(copyDatabase(from, to), /foreign key/)
      const [[users, animals, fosters, counted]] = await to.values(
        'SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM animals), (SELECT COUNT(*) FROM fosters), (SELECT COUNT(*) FROM animal_intake_counts)',
      )
      assert.deepEqual([users, animals, fosters, counted].map(Number), [0, 0, 0, 0])
    } finally {
      await from.close()
      await to.close()
    }
  })

  it('copies with `tsx seed.ts --from`, and the seeder function with {"from": "efs"}, each saying what it did', async (t) => {
    t.mock.method(console, 'error', () => {})
    const { config: sqlite } = await shelter()
    if (sqlite.kind !== 'sqlite') throw new Error('unreachable')
    const target = await emptyPostgres()
    if (target.kind !== 'postgres') throw new Error('unreachable')
    const env = { ...server.env, DB_LOCATION: 'rds', PG_DATABASE: target.database }
    const first = run('seed.ts', env, ['--from', sqlite.path])
    assert.equal(await first.exited, 0, first.output())
    assert.match(
      first.output(),
      /^copied 8 users, 16 animals and \d+ fosters from SQLite .*shelter-\d+\.db \(.+\) into PostgreSQL .*, with their ids; 17950 common passwords \(17950 added\)$/m,
    )
    const missing = run('seed.ts', env, ['--from', join(dir, 'nowhere.db')])
    assert.equal(await missing.exited, 1)
    assert.match(missing.output(), /copying failed: .*nowhere\.db: no such file, so nothing to copy/)

    // The seeder, as deploy.ts invokes it during the move: DB_LOCATION=rds, the EFS file at DB_PATH here.
    Object.assign(process.env, env, { DB_PATH: sqlite.path })
    const done = await seeder({ from: 'efs', commonPasswords: await commonPasswordList() })
    assert.equal(done.task === 'copy' && done.status, 'copied before')
    assert.match(done.summary, /an earlier copy\); 17950 common passwords$/, 'the same list again: nothing written')
    const other = await emptyPostgres()
    const seeded = await openDatabase(other)
    await setUp(seeded, 'deployed')
    await seeded.close()
    process.env.PG_DATABASE = (other as Extract<DbConfig, { kind: 'postgres' }>).database
    await assert.rejects(seeder({ from: 'efs' }), { name: 'CopyRefused', message: /nothing was copied/ })
  })
})
