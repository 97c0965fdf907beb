// DB_LOCATION and the PG_* variables: what each value selects, and the errors for bad ones.
import assert from 'node:assert/strict'
import { it } from 'node:test'
import { configFromEnv, EFS_DB_PATH } from '../db.ts'

const pg = { PG_USERNAME: 'postgres', PG_PASSWORD: 'secret', PG_ENDPOINT: 'db.example', PG_PORT: '5432' }

it('uses ./buddy_system.db by default, and DB_PATH where set', () => {
  assert.deepEqual(configFromEnv({}), { kind: 'sqlite', path: './buddy_system.db', onNetworkFs: false })
  assert.deepEqual(configFromEnv({ DB_LOCATION: 'local', DB_PATH: '/tmp/x.db' }), { kind: 'sqlite', path: '/tmp/x.db', onNetworkFs: false })
})

it('uses the EFS mount for efs, in any case, as the guide wrote EFS', () => {
  for (const value of ['efs', 'EFS']) {
    assert.deepEqual(configFromEnv({ DB_LOCATION: value }), { kind: 'sqlite', path: EFS_DB_PATH, onNetworkFs: true })
  }
  assert.equal(EFS_DB_PATH, '/mnt/efs/buddy_system.db')
})

it('reads PostgreSQL settings for rds, with TLS required and the user name as the default database', () => {
  assert.deepEqual(configFromEnv({ DB_LOCATION: 'RDS', ...pg }), {
    kind: 'postgres', host: 'db.example', port: 5432, username: 'postgres', password: 'secret',
    database: 'postgres', ssl: 'require', caFile: undefined,
  })
  const custom = configFromEnv({ DB_LOCATION: 'rds', ...pg, PG_DATABASE: 'shelter', PG_SSLMODE: 'verify-full', PG_SSLROOTCERT: '/ca.pem' })
  assert.deepEqual(custom.kind === 'postgres' && [custom.database, custom.ssl, custom.caFile], ['shelter', 'verify-full', '/ca.pem'])
})

it('names the bad value and the allowed ones', () => {
  assert.throws(() => configFromEnv({ DB_LOCATION: 'floppy' }), /DB_LOCATION=floppy is not a database location; use one of: local, efs, rds/)
  assert.throws(() => configFromEnv({ DB_LOCATION: 'rds', PG_USERNAME: 'postgres' }), /DB_LOCATION=rds needs PG_PASSWORD, PG_ENDPOINT, PG_PORT/)
  assert.throws(() => configFromEnv({ DB_LOCATION: 'rds', ...pg, PG_PORT: 'abc' }), /PG_PORT=abc is not a port number/)
  assert.throws(() => configFromEnv({ DB_LOCATION: 'rds', ...pg, PG_SSLMODE: 'prefer' }), /PG_SSLMODE=prefer is not supported; use one of: disable, require, verify-full/)
})

it('never puts the password in an error', () => {
  assert.throws(() => configFromEnv({ DB_LOCATION: 'rds', ...pg, PG_PORT: 'x' }), (e: Error) => !e.message.includes('secret'))
})
