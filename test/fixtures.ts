// Fresh databases for each test: the sample data is seeded once into a template, and each
// test gets a copy (a copied SQLite file, or a PostgreSQL database made from the template).
import { after, before, beforeEach } from 'node:test'
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { closeDatabase, configFromEnv, migrate, openDatabase, type DbConfig } from '../db.ts'
import { commonPasswordList, loadCommonPasswords, setUp } from '../seed.ts'
import type { PostgresServer } from './postgres-server.ts'

// Read by api.ts when it loads: import it only after this module.
process.env.JWT_KEY ??= '0123456789abcdef'.repeat(4)

export interface Fixture {
  /** A new database with the schema and the common passwords, and no rows, for seeding tests; with `schema: false`,
   * not even that. */
  empty(options?: { schema?: boolean }): Promise<DbConfig>
}

/** Migrates the database and loads the common passwords, as a deploy does, unless told not to. */
async function withSchema(config: DbConfig, schema = true): Promise<DbConfig> {
  if (!schema) return config
  const db = await openDatabase(config)
  await migrate(db)
  await loadCommonPasswords(db, await commonPasswordList())
  await db.close()
  return config
}

/** Points the API at a fresh copy of the seeded sample data before each test: SQLite files, or
 * databases on the given PostgreSQL server. */
export function freshDatabases(server?: PostgresServer): Fixture {
  return server ? postgresql(server) : sqlite()
}

function sqlite(): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'buddy-sqlite-'))
  const template = join(dir, 'template.db')
  let n = 0
  before(async () => {
    const db = await openDatabase({ kind: 'sqlite', path: template, onNetworkFs: false })
    await setUp(db, 'local', await commonPasswordList())
    await db.close()
  })
  beforeEach(async () => {
    await closeDatabase()
    const path = join(dir, `test-${++n}.db`)
    copyFileSync(template, path)
    process.env.DB_LOCATION = 'local'
    process.env.DB_PATH = path
  })
  after(async () => {
    await closeDatabase()
    rmSync(dir, { recursive: true, force: true })
  })
  return {
    empty: async (options = {}) =>
      withSchema({ kind: 'sqlite', path: join(dir, `empty-${++n}.db`), onNetworkFs: false }, options.schema),
  }
}

function postgresql(server: PostgresServer): Fixture {
  let admin: postgres.Sql
  let n = 0
  const names: string[] = []
  let strategy = ''
  const create = async (template?: string) => {
    const name = `buddy_test_${process.pid}_${++n}`
    // FILE_COPY: with PostgreSQL 15's default, WAL_LOG, a sequence copied from the template goes back after a
    // crash (the outage test stops the server with -m immediate) and hands out ids in use (seen here: 409 on the
    // first insert after the restart): https://www.mail-archive.com/pgsql-hackers@lists.postgresql.org/msg230776.html
    await admin.unsafe(`CREATE DATABASE ${name}${template ? ` TEMPLATE ${template}${strategy}` : ''}`)
    names.push(name)
    return name
  }
  before(async () => {
    Object.assign(process.env, server.env, { DB_LOCATION: 'rds', PG_DATABASE: 'buddy_template' })
    const config = configFromEnv()
    if (config.kind !== 'postgres') throw new Error('unreachable')
    admin = postgres({
      host: config.host,
      port: config.port,
      username: config.username,
      password: config.password,
      database: 'postgres',
      ssl: server.env.PG_SSLMODE === 'disable' ? false : 'require',
      onnotice: () => {},
    })
    const [{ server_version_num: version }] = await admin`SHOW server_version_num`
    if (Number(version) >= 150000) strategy = ' STRATEGY FILE_COPY'
    await admin`DROP DATABASE IF EXISTS buddy_template`
    await admin`CREATE DATABASE buddy_template`
    const db = await openDatabase(config)
    await setUp(db, 'local', await commonPasswordList())
    await db.close()
  })
  beforeEach(async () => {
    await closeDatabase()
    process.env.PG_DATABASE = await create('buddy_template')
  })
  after(async () => {
    await closeDatabase()
    for (const name of names) await admin.unsafe(`DROP DATABASE IF EXISTS ${name}`)
    await admin?.end()
    server.stop()
  })
  return {
    empty: async (options = {}) =>
      withSchema({ ...configFromEnv(), database: await create() } as DbConfig, options.schema),
  }
}
