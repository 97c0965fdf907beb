// `tsx seed.ts`: seeds the configured database and says what it added.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { run } from './cli.ts'
import { loginFailure } from '../seed.ts'

const dir = mkdtempSync(join(tmpdir(), 'buddy-seed-'))
after(() => rmSync(dir, { recursive: true, force: true }))

it('migrates and seeds the local database once, and says that a second run added nothing', async () => {
  const env = { DB_LOCATION: 'local', DB_PATH: join(dir, 'seed.db') }
  const first = run('seed.ts', env)
  assert.equal(await first.exited, 0, first.output())
  assert.match(
    first.output(),
    /^SQLite .*seed\.db \(.+\): schema 0 → \d+ \(applied 1 users, animals, fosters, per-day intake counts.*\); added 8 users, 16 animals, 8 fosters, 7 adoptions; staff: juniper$/m,
  )
  assert.match(first.output(), /Log in as juniper \(staff\) or any sample user with the password "password"/)
  const second = run('seed.ts', env)
  assert.equal(await second.exited, 0, second.output())
  assert.match(
    second.output(),
    /: schema at version \d+; nothing added: the sample was loaded on \d{4}-\d\d-\d\dT[\d:]{8}, and is loaded only once/,
  )
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
