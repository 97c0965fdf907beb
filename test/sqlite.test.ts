// The whole API suite on SQLite files: node:sqlite on Node 24, better-sqlite3 on Node 20.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { openDatabase } from '../db.ts'
import { freshDatabases } from './fixtures.ts'
import { apiSuite } from './api-suite.ts'

describe('on SQLite', () => {
  apiSuite(freshDatabases())

  it('uses the SQLite that this Node has: node:sqlite on 24, better-sqlite3 on 20', async () => {
    const major = Number(process.versions.node.split('.')[0])
    // Node 22 has node:sqlite, but uses it only where its statements can return arrays.
    const expected = major >= 24 ? ['node:sqlite'] : major <= 20 ? ['better-sqlite3'] : ['node:sqlite', 'better-sqlite3']
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

  it('rolls a failed transaction back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'buddy-tx-'))
    try {
      const db = await openDatabase({ kind: 'sqlite', path: join(dir, 'tx.db'), onNetworkFs: false })
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
