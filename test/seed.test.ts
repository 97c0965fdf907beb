// `tsx seed.ts`: seeds the configured database and says what it added.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { run } from './cli.ts'

const dir = mkdtempSync(join(tmpdir(), 'buddy-seed-'))
after(() => rmSync(dir, { recursive: true, force: true }))

it('migrates and seeds the local database once, and says that a second run added nothing', async () => {
  const env = { DB_LOCATION: 'local', DB_PATH: join(dir, 'seed.db') }
  const first = run('seed.ts', env)
  assert.equal(await first.exited, 0, first.output())
  assert.match(first.output(), /^SQLite .*seed\.db \(.+\): schema 0 → \d+ \(applied 1 users, animals, fosters, per-day intake counts.*\); added 8 users, 16 animals, 8 fosters, 7 adoptions/m)
  const second = run('seed.ts', env)
  assert.equal(await second.exited, 0, second.output())
  assert.match(second.output(), /: schema at version \d+; nothing added: the sample was loaded on \d{4}-\d\d-\d\dT[\d:]{8}, and is loaded only once/)
})

it('exits 1 with the reason when it cannot reach the database', async () => {
  const failed = run('seed.ts', { DB_LOCATION: 'rds', PG_USERNAME: 'postgres', PG_ENDPOINT: undefined, PG_PASSWORD: undefined, PG_PORT: undefined })
  assert.equal(await failed.exited, 1)
  assert.match(failed.output(), /seeding failed: DB_LOCATION=rds needs PG_PASSWORD, PG_ENDPOINT, PG_PORT/)
})
