// DB_LOCATION and the PG_* variables: what each value selects, and the errors for bad ones; password hashes.
import assert from 'node:assert/strict'
import { scryptSync } from 'node:crypto'
import { it } from 'node:test'
import { configFromEnv, EFS_DB_PATH, hashPassword, verifyPassword } from '../db.ts'

const pg = { PG_USERNAME: 'postgres', PG_PASSWORD: 'secret', PG_ENDPOINT: 'db.example', PG_PORT: '5432' }

it('uses ./buddy_system.db by default, and DB_PATH where set', () => {
  assert.deepEqual(configFromEnv({}), { kind: 'sqlite', path: './buddy_system.db', onNetworkFs: false })
  assert.deepEqual(configFromEnv({ DB_LOCATION: 'local', DB_PATH: '/tmp/x.db' }), {
    kind: 'sqlite',
    path: '/tmp/x.db',
    onNetworkFs: false,
  })
})

it('uses the EFS mount for efs, in any case, as the guide wrote EFS', () => {
  for (const value of ['efs', 'EFS']) {
    assert.deepEqual(configFromEnv({ DB_LOCATION: value }), { kind: 'sqlite', path: EFS_DB_PATH, onNetworkFs: true })
  }
  assert.equal(EFS_DB_PATH, '/mnt/efs/buddy_system.db')
})

it('reads PostgreSQL settings for rds, with TLS required and the user name as the default database', () => {
  assert.deepEqual(configFromEnv({ DB_LOCATION: 'RDS', ...pg }), {
    kind: 'postgres',
    host: 'db.example',
    port: 5432,
    username: 'postgres',
    password: 'secret',
    database: 'postgres',
    ssl: 'require',
    caFile: undefined,
  })
  const custom = configFromEnv({
    DB_LOCATION: 'rds',
    ...pg,
    PG_DATABASE: 'shelter',
    PG_SSLMODE: 'verify-full',
    PG_SSLROOTCERT: '/ca.pem',
  })
  assert.deepEqual(custom.kind === 'postgres' && [custom.database, custom.ssl, custom.caFile], [
    'shelter',
    'verify-full',
    '/ca.pem',
  ])
})

it('names the bad value and the allowed ones', () => {
  assert.throws(
    () => configFromEnv({ DB_LOCATION: 'floppy' }),
    /DB_LOCATION=floppy is not a database location; use one of: local, efs, rds/,
  )
  assert.throws(
    () => configFromEnv({ DB_LOCATION: 'rds', PG_USERNAME: 'postgres' }),
    /DB_LOCATION=rds needs PG_PASSWORD, PG_ENDPOINT, PG_PORT/,
  )
  assert.throws(() => configFromEnv({ DB_LOCATION: 'rds', ...pg, PG_PORT: 'abc' }), /PG_PORT=abc is not a port number/)
  assert.throws(
    () => configFromEnv({ DB_LOCATION: 'rds', ...pg, PG_SSLMODE: 'prefer' }),
    /PG_SSLMODE=prefer is not supported; use one of: disable, require, verify-full/,
  )
})

it('never puts the password in an error', () => {
  assert.throws(
    () => configFromEnv({ DB_LOCATION: 'rds', ...pg, PG_PORT: 'x' }),
    (e: Error) => !e.message.includes('secret'),
  )
})

it('hashes passwords with scrypt N=2^16, r=8, p=2 and a random salt, and verifies them', async () => {
  const [first, second] = [await hashPassword('correct horse'), await hashPassword('correct horse')]
  assert.match(first, /^scrypt\$65536\$8\$2\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/)
  assert.notEqual(first, second)
  assert.equal(await verifyPassword('correct horse', first), true)
  assert.equal(await verifyPassword('correct horse!', first), false)
  assert.equal(await verifyPassword('correct horse', 'bcrypt$whatever'), false)
})

it('still verifies a hash stored with the earlier parameters, N=2^17, r=8, p=1', async () => {
  const salt = Buffer.from('a salt of 16 b..')
  const hash = scryptSync('correct horse', salt, 32, { N: 2 ** 17, r: 8, p: 1, maxmem: 160 * 2 ** 20 })
  const stored = ['scrypt', 2 ** 17, 8, 1, salt.toString('base64'), hash.toString('base64')].join('$')
  assert.equal(await verifyPassword('correct horse', stored), true)
  assert.equal(await verifyPassword('wrong horse', stored), false)
})
