// The whole API suite on SQLite files: node:sqlite on Node 24, better-sqlite3 on Node 20.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { migrate, openDatabase, type Database } from '../db.ts'
import { freshDatabases } from './fixtures.ts'
import { apiSuite } from './api-suite.ts'
import { httpApiEvent } from './events.ts'
import { run } from './cli.ts'

describe('on SQLite', () => {
  apiSuite(freshDatabases())

  it(
    'answers 503 with Retry-After when another connection holds the write lock past the busy timeout',
    { timeout: 30_000 },
    async (t) => {
      t.mock.method(console, 'error', () => {})
      const { handler } = await import('../api.ts')
      const login = await handler(
        httpApiEvent({
          method: 'POST',
          path: '/auth/token',
          body: 'username=juniper&password=password',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
        }),
      )
      const token = JSON.parse(login.body!).access_token
      const other = await openDatabase({ kind: 'sqlite', path: process.env.DB_PATH!, onNetworkFs: false })
      await other.exec('BEGIN IMMEDIATE') // another container's write, in the middle
      try {
        const result = await handler(
          httpApiEvent({
            method: 'POST',
            path: '/animals',
            body: '{"name": "Rex", "age": 1, "kind": "dog"}',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          }),
        )
        assert.equal(result.statusCode, 503, result.body)
        assert.equal(result.headers?.['retry-after'], '5')
        assert.equal((await handler(httpApiEvent({ path: '/animals/1' }))).statusCode, 200, 'reads go on (WAL)')
      } finally {
        await other.exec('ROLLBACK')
        await other.close()
      }
      const after = await handler(
        httpApiEvent({
          method: 'POST',
          path: '/animals',
          body: '{"name": "Rex", "age": 1, "kind": "dog"}',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        }),
      )
      assert.equal(after.statusCode, 200, 'and the write once the lock is gone')
    },
  )

  it('uses the SQLite that this Node has: node:sqlite on 24, better-sqlite3 on 20', async () => {
    const major = Number(process.versions.node.split('.')[0])
    // Node 22 has node:sqlite, but uses it only where its statements can return arrays.
    const expected =
      major >= 24 ? ['node:sqlite'] : major <= 20 ? ['better-sqlite3'] : ['node:sqlite', 'better-sqlite3']
    const dir = mkdtempSync(join(tmpdir(), 'buddy-driver-'))
    const db = await openDatabase({ kind: 'sqlite', path: join(dir, 'x.db'), onNetworkFs: false })
    assert.ok(expected.map((name) => `SQLite ${join(dir, 'x.db')} (${name})`).includes(db.label), db.label)
    await db.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('keeps the rollback journal, a busy timeout and foreign keys on a network file system', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'buddy-efs-'))
    try {
      const db = await openDatabase({ kind: 'sqlite', path: join(dir, 'efs.db'), onNetworkFs: true })
      const pragma = async (name: string) => Object.values((await db.all(`PRAGMA ${name}`))[0])[0]
      assert.equal(await pragma('journal_mode'), 'delete')
      assert.equal(Number(await pragma('busy_timeout')), 5000)
      assert.equal(Number(await pragma('foreign_keys')), 1)
      await db.close()
      const local = await openDatabase({ kind: 'sqlite', path: join(dir, 'local.db'), onNetworkFs: false })
      assert.equal(Object.values((await local.all('PRAGMA journal_mode'))[0])[0], 'wal')
      await local.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it(
    "opens a file whose write lock another process holds by waiting for it, as a container starting during another one's write on EFS",
    { timeout: 30_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'buddy-open-'))
      const config = { kind: 'sqlite', path: join(dir, 'efs.db'), onNetworkFs: true } as const
      try {
        const db = await openDatabase(config)
        await migrate(db)
        await db.close()
        const holder = run('-e', {}, [
          `(async () => {
        const { openDatabase } = await import('./db.ts')
        const db = await openDatabase(${JSON.stringify(config)})
        await db.exec('BEGIN EXCLUSIVE')
        await db.exec("INSERT INTO animals (name, age, kind, intake_date) VALUES ('a', 1, 'cat', '2024-01-01')")
        console.log('locked')
        setTimeout(async () => { await db.exec('COMMIT'); await db.close() }, 500)
      })()`,
        ])
        await holder.waitFor(/locked/)
        const opened = await openDatabase(config) // SQLITE_BUSY at once if it sets journal_mode before busy_timeout
        assert.deepEqual(await opened.values('SELECT count(*) FROM animals'), [[1]], 'opened after the commit')
        await opened.close()
        assert.equal(await holder.exited, 0, holder.output())
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    },
  )

  // `b` stands for another process's connection: the seeder, or an sqlite3 shell.
  const twoConnections = async (onNetworkFs: boolean, test: (a: Database, b: Database) => Promise<void>) => {
    const dir = mkdtempSync(join(tmpdir(), 'buddy-two-'))
    const config = { kind: 'sqlite', path: join(dir, 'two.db'), onNetworkFs } as const
    const [a, b] = [await openDatabase(config), await openDatabase(config)]
    await migrate(a)
    try {
      await b.all('PRAGMA busy_timeout = 0') // fail at once where a lock is held, instead of waiting 5 s
      await test(a, b)
    } finally {
      await a.close()
      await b.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }
  const INSERT = "INSERT INTO animals (name, age, kind, intake_date) VALUES ('a', 1, 'cat', '2024-01-01') RETURNING id"
  const count = async (db: Database) => (await db.values('SELECT count(*) FROM animals'))[0][0]
  /** Whether a reader keeps a checkpoint from emptying the WAL: busy, the first column of its one row. */
  const checkpointBlocked = async (db: Database) => (await db.values('PRAGMA wal_checkpoint(TRUNCATE)'))[0][0] === 1

  it('sees each write of another connection at its next read, and holds no read lock after a read (WAL)', async () => {
    await twoConnections(false, async (a, b) => {
      assert.equal(await count(a), 0)
      await b.values(INSERT)
      assert.equal(await count(a), 1)
      await b.values(INSERT)
      assert.equal(await count(a), 2)
      assert.equal(await checkpointBlocked(b), false)
    })
  })

  it("writes on the latest data after its own reads and another connection's writes", async () => {
    await twoConnections(false, async (a, b) => {
      assert.equal(await count(a), 0)
      await b.values(INSERT)
      await a.values(INSERT) // not SQLITE_BUSY_SNAPSHOT
      assert.equal(await count(a), 2)
      await b.values(INSERT)
      const inside = await a.transaction(async (tx) => {
        await tx.values(INSERT)
        return count(tx)
      })
      assert.equal(inside, 4)
      assert.equal(await count(a), 4)
    })
  })

  it('holds no lock after a read with the rollback journal (EFS), where it would keep other containers from writing', async () => {
    await twoConnections(true, async (a, b) => {
      assert.equal(await count(a), 0)
      assert.equal(await count(a), 0)
      await b.values(INSERT) // busy_timeout 0: throws SQLITE_BUSY if `a` still holds its shared lock
      assert.equal(await count(a), 1)
    })
  })

  it('rolls a failed transaction back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'buddy-tx-'))
    try {
      const db = await openDatabase({ kind: 'sqlite', path: join(dir, 'tx.db'), onNetworkFs: false })
      await migrate(db)
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.all("INSERT INTO animals (name, age, kind, intake_date) VALUES ('a', 1, 'cat', '2024-01-01')")
          throw new Error('stop')
        }),
        /stop/,
      )
      assert.deepEqual(await db.all('SELECT id FROM animals'), [])
      await db.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
