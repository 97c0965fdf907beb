// The whole API suite on a real PostgreSQL server that, like RDS, accepts only TLS connections.
// With CI=true a missing server is a failure; elsewhere the suite is skipped and says why.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { configFromEnv, openDatabase, type DbConfig } from '../db.ts'
import { freshDatabases } from './fixtures.ts'
import { startPostgres } from './postgres-server.ts'
import { apiSuite } from './api-suite.ts'

const server = await startPostgres()
if (typeof server === 'string' && process.env.CI === 'true') {
  throw new Error(`CI=true and the PostgreSQL suite cannot run: ${server}`)
}

describe('on PostgreSQL', { skip: typeof server === 'string' ? server : false }, () => {
  if (typeof server === 'string') return
  apiSuite(freshDatabases(server))

  const config = () => configFromEnv({ ...server.env, DB_LOCATION: 'rds', PG_DATABASE: 'postgres' }) as Extract<DbConfig, { kind: 'postgres' }>

  it('connects over TLS, verifying the server certificate', async () => {
    const db = await openDatabase(config())
    const [{ ssl }] = await db.all<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
    assert.equal(ssl, true)
    await db.close()
  })

  it('is refused without TLS, as RDS refuses it', { skip: !server.env.PG_SSLROOTCERT && 'not our own cluster' }, async () => {
    const plain = await openDatabase({ ...config(), ssl: 'disable' })
    await assert.rejects(plain.all('SELECT 1'), /no pg_hba.conf entry|SSL off|no encryption/)
    await plain.close()
  })

  it('refuses a server whose certificate it cannot verify under verify-full', { skip: !server.env.PG_SSLROOTCERT && 'not our own cluster' }, async () => {
    const unverified = await openDatabase({ ...config(), caFile: undefined })
    await assert.rejects(unverified.all('SELECT 1'), /self[- ]signed|certificate/)
    await unverified.close()
  })
})
