// `tsx seed.ts`: seeds the configured database and says what it added.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { run } from './cli.ts'
import { exportPage, loadCommonPasswords, loginFailure } from '../seed.ts'
import { createAnimal, isCommonPassword, migrate, openDatabase, SchemaError } from '../db.ts'

const dir = mkdtempSync(join(tmpdir(), 'buddy-seed-'))
after(() => rmSync(dir, { recursive: true, force: true }))

it('migrates and seeds the local database once, and says that a second run added nothing', async () => {
  const env = { DB_LOCATION: 'local', DB_PATH: join(dir, 'seed.db') }
  const first = run('seed.ts', env)
  assert.equal(await first.exited, 0, first.output())
  assert.match(
    first.output(),
    /^SQLite .*seed\.db \(.+\): schema 0 → \d+ \(applied 1 users, animals, fosters, per-day intake counts.*\); added 8 users, 16 animals, 8 fosters, 7 adoptions; staff: juniper; 17950 common passwords \(17950 added\)$/m,
  )
  assert.match(first.output(), /Log in as juniper \(staff\) or any sample user with the password "password"/)
  const second = run('seed.ts', env)
  assert.equal(await second.exited, 0, second.output())
  assert.match(
    second.output(),
    /: schema at version \d+; nothing added: the sample was loaded on \d{4}-\d\d-\d\dT[\d:]{8}, and is loaded only once; staff: juniper; 17950 common passwords$/m,
  )
  const list = run('seed.ts', {}, ['--common-passwords'])
  assert.equal(await list.exited, 0)
  const passwords = JSON.parse(list.stdout())
  assert.equal(passwords.length, 17950)
  assert.ok(passwords.includes('sunshine') && passwords.every((p: string) => p.length >= 8))
})

it('makes the common passwords the list given, writing only what differs; refuses a bad list and changes nothing', async () => {
  const db = await openDatabase({ kind: 'sqlite', path: join(dir, 'common.db'), onNetworkFs: false })
  try {
    await migrate(db)
    await assert.rejects(isCommonPassword(db, 'sunshine'), SchemaError, 'no list: refused, never let through')
    assert.deepEqual(await loadCommonPasswords(db, ['Sunshine', 'password1']), { count: 2, added: 2, removed: 0 })
    assert.deepEqual(await loadCommonPasswords(db, ['password1', 'iloveyou']), { count: 2, added: 1, removed: 1 })
    assert.deepEqual(await loadCommonPasswords(db, ['iloveyou', 'password1']), { count: 2, added: 0, removed: 0 })
    for (const bad of [[], ['ok', 3], [''], 'sunshine', ['x'.repeat(257)]])
      await assert.rejects(loadCommonPasswords(db, bad), /\{"commonPasswords"\}: /, JSON.stringify(bad))
    assert.deepEqual(await db.values('SELECT password FROM common_passwords ORDER BY password'), [
      ['iloveyou'],
      ['password1'],
    ])
    assert.equal(await isCommonPassword(db, 'ILoveYou'), true)
    assert.equal(await isCommonPassword(db, 'sunshine'), false)
  } finally {
    await db.close()
  }
})

it('exits 1 with the reason when it cannot reach the database', async () => {
  const failed = run('seed.ts', {
    DB_LOCATION: 'rds',
    PG_USERNAME: 'postgres',
    PG_ENDPOINT: undefined,
    PG_PASSWORD: undefined,
    PG_PORT: undefined,
  })
  assert.equal(await failed.exited, 1)
  assert.match(failed.output(), /seeding failed: DB_LOCATION=rds needs PG_PASSWORD, PG_ENDPOINT, PG_PORT/)
})

it('makes a user staff by name with --staff, takes it back with --revoke, and refuses an unknown name', async () => {
  const env = { DB_LOCATION: 'local', DB_PATH: join(dir, 'staff.db') }
  assert.equal(await run('seed.ts', env).exited, 0)
  const granted = run('seed.ts', env, ['--staff', 'reggie'])
  assert.equal(await granted.exited, 0, granted.output())
  assert.match(granted.output(), /: reggie is staff now; staff: juniper, reggie$/m)
  const revoked = run('seed.ts', env, ['--staff', 'juniper', '--revoke'])
  assert.equal(await revoked.exited, 0, revoked.output())
  assert.match(revoked.output(), /: juniper is no longer staff; staff: reggie$/m)
  const unknown = run('seed.ts', env, ['--staff', 'nobody'])
  assert.equal(await unknown.exited, 1)
  assert.match(unknown.output(), /changing staff failed: there is no user named "nobody" in SQLite .*: nothing changed/)
  const misused = run('seed.ts', env, ['--revoke'])
  assert.equal(await misused.exited, 2)
  assert.match(misused.output(), /--revoke goes with --staff USERNAME\nusage: tsx seed\.ts/)
})

it("tells a missing API role from a token RDS refused, by PostgreSQL's answer to the login", () => {
  // RDS checks tokens through PAM for members of rds_iam; a user that does not exist meets password authentication.
  const refused = (code: string, message: string) => Object.assign(new Error(message), { code })
  assert.equal(
    loginFailure(refused('28P01', 'password authentication failed for user "buddy_api"'))?.name,
    'NeedsMaster',
  )
  assert.equal(loginFailure(refused('28000', 'role "buddy_api" does not exist'))?.name, 'NeedsMaster')
  assert.equal(loginFailure(refused('28P01', 'PAM authentication failed for user "buddy_api"'))?.name, 'TokenRefused')
  assert.equal(loginFailure(refused('53300', 'too many connections for role "buddy_api"')), undefined)
})

it("cuts an export page short of Lambda's 6 MB answer, and the next page goes on after its last row", async () => {
  const db = await openDatabase({ kind: 'sqlite', path: join(dir, 'large.db'), onNetworkFs: false })
  try {
    await migrate(db)
    // 1,000 animals of 8 KB names: 8 MB, more than one answer of the seeder function may hold.
    for (let i = 0; i < 1000; i++) {
      await createAnimal(db, {
        name: `${i}`.padEnd(8000, 'x'),
        age: 1,
        kind: 'cat',
        fixed: true,
        vaccinated: true,
        intake_date: '2026-11-01',
      })
    }
    const first = await exportPage(db, { table: 'animals' })
    assert.ok(JSON.stringify(first).length < 6 * 1024 * 1024, `${JSON.stringify(first).length} bytes`)
    assert.ok(first.rows.length > 0 && first.rows.length < 1000, `${first.rows.length} rows`)
    assert.equal(first.next, first.rows.at(-1)![0])
    let rows = first.rows.length
    for (let page = first; page.next !== undefined; rows += page.rows.length)
      page = await exportPage(db, { table: 'animals', after: page.next })
    assert.equal(rows, 1000)
    await assert.rejects(exportPage(db, { table: 'sessions' as 'animals' }), /no such table/)
  } finally {
    await db.close()
  }
})
