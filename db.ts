// The database: DB_LOCATION picks SQLite on a local file (default), SQLite on
// EFS, or PostgreSQL on RDS. Both speak the same SQL here, written once with `?`
// placeholders. The schema is a list of numbered migrations (MIGRATIONS, below),
// applied by `migrate` when the seeder runs at deploy time, by the local server
// and by `tsx seed.ts`: the API itself runs no DDL, it only checks the version.
import type { ScryptOptions } from 'node:crypto'
import type { ParameterOrJSON, Sql, TransactionSql } from 'postgres'

export type DbConfig =
  | { kind: 'sqlite'; path: string; onNetworkFs: boolean }
  | {
      kind: 'postgres'
      host: string
      port: number
      username: string
      /** Empty with iamRegion: each connection then signs an IAM authentication token instead. */
      password: string
      iamRegion?: string
      database: string
      ssl: 'disable' | 'require' | 'verify-full'
      caFile?: string
    }

export interface Database {
  readonly kind: DbConfig['kind']
  /** Where the data is, for people: "SQLite ./buddy_system.db (node:sqlite)", "PostgreSQL db.example:5432/postgres". */
  readonly label: string
  all<T = Row>(sql: string, params?: unknown[]): Promise<T[]>
  /** The rows as arrays, in the order of the query's columns: the hot paths read entities this way,
   * as named objects cost SQLite's drivers a property lookup by name for every column. */
  values(sql: string, params?: unknown[]): Promise<unknown[][]>
  /** Runs a script of several statements, without parameters (migrations). */
  exec(sql: string): Promise<void>
  /** Runs `fn` in one transaction: all of it, or none of it. */
  transaction<T>(fn: (tx: Database) => Promise<T>): Promise<T>
  close(): Promise<void>
}
export type Row = Record<string, unknown>

export class ConfigError extends Error {}

/** How long a request waits for the database, at most: to connect, for a statement, for SQLite's lock. Below the
 * function's timeout, so that a client gets our 503 rather than Lambda's timeout (deploy.ts sets it from --timeout). */
const WAIT_MS = Number(process.env.DB_WAIT_MS) > 0 ? Number(process.env.DB_WAIT_MS) : 5000

// Driver errors, by what they mean, in one table: PostgreSQL's SQLSTATEs
// (https://www.postgresql.org/docs/current/errcodes-appendix.html), postgres.js's and the operating system's connection
// codes (https://github.com/porsager/postgres#connection-errors), and SQLite's extended codes as better-sqlite3 names them
// and node:sqlite numbers them (https://www.sqlite.org/rescode.html).
type Fault = 'unavailable' | 'duplicate' | 'dangling' | 'bad value' | 'no table'
const DRIVER_ERRORS: [Fault, RegExp, number[]][] = [
  // The database cannot serve now (down, restarting, full, slow, locked), not that the request is wrong: the API
  // answers 503 and the next request tries again. PostgreSQL: connection exceptions (08), too many connections
  // (53300), shutting down or starting (57P01-3), statement_timeout (57014); SQLite: the lock still held by another
  // connection once busy_timeout ran out.
  [
    'unavailable',
    /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|CONNECT_TIMEOUT|CONNECTION_(CLOSED|ENDED|DESTROYED)|08...|53300|57P0[123]|57014|SQLITE_(BUSY|LOCKED)\w*)$/,
    [5, 6],
  ],
  ['duplicate', /^(23505|SQLITE_CONSTRAINT_UNIQUE)$/, [2067]],
  ['dangling', /^(23503|SQLITE_CONSTRAINT_FOREIGNKEY)$/, [787]],
  ['bad value', /^(22...|23514|23502|SQLITE_CONSTRAINT_CHECK|SQLITE_CONSTRAINT_NOTNULL)$/, [275, 1299]],
  ['no table', /^42P01$/, []],
]

function faultOf(error: unknown): Fault | undefined {
  const e = error as { code?: string; errcode?: number; message?: string }
  const code = String(e?.code ?? '')
  const found = DRIVER_ERRORS.find(([, codes, numbers]) => codes.test(code) || numbers.includes(Number(e?.errcode)))
  if (found) return found[0]
  // SQLite says a table is missing only in words (SQLITE_ERROR).
  return /^no such table/.test(e?.message ?? '') ? 'no table' : undefined
}

/** Whether an error says the database cannot serve now: the API answers 503. */
export const isUnavailable = (error: unknown) => faultOf(error) === 'unavailable'

/** A UNIQUE constraint was violated (SQLite through either driver, or PostgreSQL). */
export const isUniqueViolation = (error: unknown) => faultOf(error) === 'duplicate'

const REQUEST_FAULTS: Partial<Record<Fault, { status: 409 | 422; detail: string }>> = {
  duplicate: { status: 409, detail: 'Conflict: a row with this value exists already' },
  dangling: { status: 409, detail: 'Conflict: it refers to a row that is gone, or is referred to' },
  'bad value': { status: 422, detail: 'A value is outside what the database accepts' },
}

/** An error that says the request is at fault: its status (409 a conflict, 422 a value) and what it was. */
export function requestFault(error: unknown): { status: 409 | 422; detail: string } | undefined {
  const fault = faultOf(error)
  return fault && REQUEST_FAULTS[fault]
}

/** The database has no schema yet, or an older one than this code needs (or no common-password list): the API
 * answers 503. */
export class SchemaError extends Error {}

const LOCATIONS = ['local', 'efs', 'rds']
export const EFS_DB_PATH = '/mnt/efs/buddy_system.db'

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): DbConfig {
  const location = env.DB_LOCATION?.trim().toLowerCase() || 'local'
  if (location === 'local') {
    return { kind: 'sqlite', path: env.DB_PATH || './buddy_system.db', onNetworkFs: false }
  }
  // DB_PATH, for a file system mounted elsewhere than on Lambda (an EC2 host's EFS mount, a test's directory).
  if (location === 'efs') return { kind: 'sqlite', path: env.DB_PATH || EFS_DB_PATH, onNetworkFs: true }
  if (location !== 'rds') {
    throw new ConfigError(
      `DB_LOCATION=${env.DB_LOCATION} is not a database location; use one of: ${LOCATIONS.join(', ')}`,
    )
  }
  // PG_AUTH=iam: no password, but a token signed with the AWS credentials (the Lambda function's role).
  const auth = env.PG_AUTH?.trim().toLowerCase() || 'password'
  if (auth !== 'password' && auth !== 'iam') {
    throw new ConfigError(
      `PG_AUTH=${env.PG_AUTH} is not supported; use password (with PG_PASSWORD) or iam (an IAM token)`,
    )
  }
  const needed = ['PG_USERNAME', ...(auth === 'password' ? ['PG_PASSWORD'] : []), 'PG_ENDPOINT', 'PG_PORT']
  const missing = needed.filter((name) => !env[name])
  if (missing.length) throw new ConfigError(`DB_LOCATION=rds needs ${missing.join(', ')}`)
  const iamRegion = auth === 'iam' ? env.AWS_REGION || env.AWS_DEFAULT_REGION : undefined
  if (auth === 'iam' && !iamRegion)
    throw new ConfigError('PG_AUTH=iam needs AWS_REGION: the region of the RDS instance')
  // Checked here, as the token is signed in the middle of the connection's login, where a throw is nobody's to catch.
  if (auth === 'iam' && !(env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY)) throw new ConfigError(NO_CREDENTIALS)
  const port = Number(env.PG_PORT)
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`PG_PORT=${env.PG_PORT} is not a port number`)
  }
  // RDS for PostgreSQL 15+ refuses unencrypted connections (rds.force_ssl = 1).
  const ssl = env.PG_SSLMODE || 'require'
  if (ssl !== 'disable' && ssl !== 'require' && ssl !== 'verify-full') {
    throw new ConfigError(`PG_SSLMODE=${ssl} is not supported; use one of: disable, require, verify-full`)
  }
  if (iamRegion && ssl === 'disable') throw new ConfigError('PG_AUTH=iam needs TLS: RDS takes IAM tokens over TLS only')
  return {
    kind: 'postgres',
    host: env.PG_ENDPOINT!,
    port,
    username: env.PG_USERNAME!,
    password: iamRegion ? '' : env.PG_PASSWORD!,
    ...(iamRegion ? { iamRegion } : {}),
    database: env.PG_DATABASE || env.PG_USERNAME!,
    ssl,
    caFile: env.PG_SSLROOTCERT || undefined,
  }
}

let current: Promise<Database> | undefined

/** The database of this process (of this Lambda container), opened on first use and then reused,
 * once its schema is known to be recent enough (else a SchemaError, and the next call tries again). */
export function database(): Promise<Database> {
  current ??= openChecked(configFromEnv()).catch((error) => {
    current = undefined
    throw error
  })
  return current
}

async function openChecked(config: DbConfig): Promise<Database> {
  const db = await openDatabase(config)
  const version = await schemaVersion(db).catch(async (error) => {
    await db.close()
    throw error
  })
  if (version >= SCHEMA_VERSION) return db
  await db.close()
  const fix = 'deploy again (tsx deploy.ts efs|rds), or run `tsx seed.ts` for a database of your own'
  throw new SchemaError(
    version === 0
      ? `The database has no schema yet: ${fix}.`
      : `The database schema is at version ${version} and this release needs ${SCHEMA_VERSION}: ${fix}.`,
  )
}

export async function closeDatabase(): Promise<void> {
  const db = current
  current = undefined
  await (await db?.catch(() => undefined))?.close()
}

export async function openDatabase(config: DbConfig): Promise<Database> {
  return config.kind === 'sqlite' ? openSqlite(config) : openPostgres(config)
}

// Schema: numbered migrations, each applied once, in order, and recorded in schema_migrations. The first
// is written with IF NOT EXISTS, so that it also adopts a database made before migrations existed.

const schema = (t: { id: string; date: string; timestamp: string }) => `
CREATE TABLE IF NOT EXISTS users (
  id ${t.id},
  username TEXT NOT NULL UNIQUE,
  email TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  created_at ${t.timestamp} NOT NULL
);
CREATE TABLE IF NOT EXISTS animals (
  id ${t.id},
  name TEXT NOT NULL,
  age INTEGER NOT NULL,
  kind TEXT NOT NULL,
  fixed BOOLEAN NOT NULL DEFAULT FALSE,
  vaccinated BOOLEAN NOT NULL DEFAULT FALSE,
  intake_date ${t.date} NOT NULL,
  adopter_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
  adoption_date ${t.date}
);
CREATE TABLE IF NOT EXISTS fosters (
  id ${t.id},
  animal_id INTEGER NOT NULL REFERENCES animals (id) ON DELETE CASCADE,
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  start_date ${t.date} NOT NULL,
  end_date ${t.date}
);
CREATE INDEX IF NOT EXISTS animals_name ON animals (name, id);
CREATE INDEX IF NOT EXISTS animals_age ON animals (age, id);
CREATE INDEX IF NOT EXISTS animals_intake_date ON animals (intake_date, id);
CREATE INDEX IF NOT EXISTS animals_adopter_id ON animals (adopter_id, adoption_date, id);
CREATE INDEX IF NOT EXISTS fosters_user_id ON fosters (user_id, start_date, id);
CREATE INDEX IF NOT EXISTS fosters_animal_id ON fosters (animal_id);
-- How many animals came in on each day, kept by triggers (below): GET /animals counts its matches
-- by adding up days, not by counting every animal.
CREATE TABLE IF NOT EXISTS animal_intake_counts (
  intake_date ${t.date} PRIMARY KEY,
  n INTEGER NOT NULL
);
-- When the sample in fake_db.json was loaded (seed.ts): it is loaded once in a database's life.
CREATE TABLE IF NOT EXISTS sample_loads (
  loaded_at ${t.timestamp} NOT NULL,
  added_rows INTEGER NOT NULL
);
`

// The counts' triggers, and a first count for a database made before them.
const BACKFILL_COUNTS = `
INSERT INTO animal_intake_counts (intake_date, n)
SELECT intake_date, count(*) FROM animals
WHERE NOT EXISTS (SELECT 1 FROM animal_intake_counts)
GROUP BY intake_date;
`
const SQLITE_COUNT_TRIGGERS = `
CREATE TRIGGER IF NOT EXISTS animals_counted AFTER INSERT ON animals BEGIN
  INSERT INTO animal_intake_counts (intake_date, n) VALUES (NEW.intake_date, 1)
  ON CONFLICT (intake_date) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS animals_uncounted AFTER DELETE ON animals BEGIN
  UPDATE animal_intake_counts SET n = n - 1 WHERE intake_date = OLD.intake_date;
END;
CREATE TRIGGER IF NOT EXISTS animals_recounted AFTER UPDATE OF intake_date ON animals BEGIN
  UPDATE animal_intake_counts SET n = n - 1 WHERE intake_date = OLD.intake_date;
  INSERT INTO animal_intake_counts (intake_date, n) VALUES (NEW.intake_date, 1)
  ON CONFLICT (intake_date) DO UPDATE SET n = n + 1;
END;
`
// PostgreSQL counts once per statement, from its transition tables: a bulk insert costs one upsert per day,
// not one per animal. https://www.postgresql.org/docs/current/sql-createtrigger.html
const POSTGRES_COUNT_TRIGGERS = `
CREATE OR REPLACE FUNCTION count_animal_intake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN -- only animals whose intake date changed move between days
    UPDATE animal_intake_counts c SET n = c.n - d.n
      FROM (SELECT o.intake_date, count(*) AS n FROM old_rows o JOIN new_rows m USING (id)
            WHERE o.intake_date <> m.intake_date GROUP BY o.intake_date) d
      WHERE c.intake_date = d.intake_date;
    INSERT INTO animal_intake_counts (intake_date, n)
      SELECT m.intake_date, count(*) FROM old_rows o JOIN new_rows m USING (id)
      WHERE o.intake_date <> m.intake_date GROUP BY m.intake_date
      ON CONFLICT (intake_date) DO UPDATE SET n = animal_intake_counts.n + EXCLUDED.n;
  ELSIF TG_OP = 'DELETE' THEN
    UPDATE animal_intake_counts c SET n = c.n - d.n
      FROM (SELECT intake_date, count(*) AS n FROM old_rows GROUP BY intake_date) d WHERE c.intake_date = d.intake_date;
  ELSE
    INSERT INTO animal_intake_counts (intake_date, n) SELECT intake_date, count(*) FROM new_rows GROUP BY intake_date
      ON CONFLICT (intake_date) DO UPDATE SET n = animal_intake_counts.n + EXCLUDED.n;
  END IF;
  RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER animals_counted_in AFTER INSERT ON animals
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_animal_intake();
CREATE OR REPLACE TRIGGER animals_counted_out AFTER DELETE ON animals
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_animal_intake();
CREATE OR REPLACE TRIGGER animals_recounted AFTER UPDATE ON animals
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_animal_intake();
`

// Usernames and emails are unique by a key: the text in Unicode's compatibility form (NFKC: a fullwidth ｊ is j),
// case-folded (toUpperCase then toLowerCase folds ß to ss, as full case folding does), and NFKC again.
// https://www.unicode.org/reports/tr15/ and https://www.unicode.org/reports/tr44/#CaseFolding.txt
export const identityKey = (text: string) => text.normalize('NFKC').toUpperCase().toLowerCase().normalize('NFKC')

// A username does not mix scripts the way look-alikes do (a Cyrillic р among Latin letters): UTS #39's "highly
// restrictive" level, https://www.unicode.org/reports/tr39/#Restriction_Level_Detection. A name in any one script is
// welcome, and Japanese, Chinese and Korean mixes with Latin too.
const SCRIPTS = [
  'Latin',
  'Greek',
  'Cyrillic',
  'Armenian',
  'Georgian',
  'Hebrew',
  'Arabic',
  'Syriac',
  'Thaana',
  'Devanagari',
  'Bengali',
  'Gurmukhi',
  'Gujarati',
  'Oriya',
  'Tamil',
  'Telugu',
  'Kannada',
  'Malayalam',
  'Sinhala',
  'Thai',
  'Lao',
  'Tibetan',
  'Myanmar',
  'Khmer',
  'Mongolian',
  'Ethiopic',
  'Cherokee',
  'Hangul',
  'Hiragana',
  'Katakana',
  'Bopomofo',
  'Han',
].map((name) => [name, new RegExp(`\\p{Script=${name}}`, 'u')] as const)
const SHARED = /[\p{Script=Common}\p{Script=Inherited}]/u // digits, punctuation, combining marks: any script's
const MIXES = [
  ['Latin', 'Han', 'Hiragana', 'Katakana'],
  ['Latin', 'Han', 'Bopomofo'],
  ['Latin', 'Han', 'Hangul'],
]
export function oneScript(name: string): boolean {
  const scripts = new Set<string>()
  for (const char of name) {
    if (!SHARED.test(char)) scripts.add(SCRIPTS.find(([, pattern]) => pattern.test(char))?.[0] ?? 'another')
  }
  return scripts.size <= 1 || MIXES.some((mix) => [...scripts].every((script) => mix.includes(script)))
}

const IDENTITY_COLUMNS = `
ALTER TABLE users ADD COLUMN username_key TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN email_key TEXT NOT NULL DEFAULT '';
-- A pet whose adopter was deleted lost its adopter_id (ON DELETE SET NULL) but kept its adoption date.
UPDATE animals SET adoption_date = NULL WHERE adopter_id IS NULL AND adoption_date IS NOT NULL;
`

/** Fills the keys of the users there are, then makes them unique. Two users whose names (or emails) differ only in
 * case or form clash: the older keeps the key, the later one gets it with its id after a #, and is reported. */
async function fillIdentityKeys(tx: Database): Promise<string[]> {
  const notes: string[] = []
  const taken = { username: new Map<string, string>(), email: new Map<string, string>() }
  const rows = await tx.values('SELECT id, username, email FROM users ORDER BY id')
  for (const [id, username, email] of rows as [number, string, string][]) {
    const keys = { username: identityKey(username), email: identityKey(email) }
    for (const field of ['username', 'email'] as const) {
      const first = taken[field].get(keys[field])
      if (first === undefined) taken[field].set(keys[field], `${id}`)
      else {
        notes.push(
          `user ${id}'s ${field} ${JSON.stringify(field === 'username' ? username : email)} clashes with user ${first}'s: it logs in by its exact ${field === 'username' ? 'name' : 'email'} only; rename one of them`,
        )
        keys[field] = `${keys[field]}#${id}`
      }
    }
    await tx.all('UPDATE users SET username_key = ?, email_key = ? WHERE id = ?', [keys.username, keys.email, id])
  }
  await tx.exec(
    'CREATE UNIQUE INDEX users_by_username_key ON users (username_key); CREATE UNIQUE INDEX users_by_email_key ON users (email_key);',
  )
  return notes
}

// Staff manage animals and adoptions (API.md, Access); every user made before is public. A token carries the
// password_version of its user at login, and a password change moves it on: older tokens no longer match.
const ACCESS_COLUMNS = `
ALTER TABLE users ADD COLUMN is_staff BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN password_version INTEGER NOT NULL DEFAULT 1;
`

// Abuse limits (API.md, Limits), kept in the database so that every Lambda container sees the same counts.
const LIMIT_TABLES = `
CREATE TABLE login_failures (
  username_key TEXT PRIMARY KEY,
  failures INTEGER NOT NULL,
  last_failed_at BIGINT NOT NULL,
  blocked_until BIGINT
);
CREATE INDEX login_failures_by_time ON login_failures (last_failed_at);
CREATE TABLE address_counts (
  address TEXT NOT NULL,
  kind TEXT NOT NULL,
  window_start BIGINT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (address, kind, window_start)
);
CREATE INDEX address_counts_by_time ON address_counts (window_start);
`

/** Adoptions that make sense (API.md, Limits): an adopter and a date together, the date neither before the intake
 * nor after today. Rows that break it lose both, and are counted in the seeder's answer. */
async function clearBadAdoptions(tx: Database): Promise<string[]> {
  const bad = `(adopter_id IS NULL) <> (adoption_date IS NULL) OR adoption_date < intake_date OR adoption_date > ?`
  const today = new Date().toISOString().slice(0, 10)
  const cleared = await tx.all(`UPDATE animals SET adopter_id = NULL, adoption_date = NULL WHERE ${bad} RETURNING id`, [
    today,
  ])
  return cleared.length
    ? [
        `cleared the adoption of ${cleared.length} animals whose adopter and date did not go together, or whose date was before their intake or after today`,
      ]
    : []
}

// The most commonly used passwords (API.md: refused for a new one). The list is data, not code: the seeder loads it
// (seed.ts, loadCommonPasswords), from what deploy.ts sends it, so that the package does not carry it.
const COMMON_PASSWORDS = (withoutRowid: string) => `
CREATE TABLE common_passwords (password TEXT PRIMARY KEY)${withoutRowid};
`

interface Migration {
  version: number
  name: string
  sqlite: string
  postgres: string
  /** Work SQL alone cannot do, after the SQL; what it returns is reported (the seeder's answer, `tsx seed.ts`). */
  run?(tx: Database): Promise<string[]>
}

const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'users, animals, fosters, per-day intake counts',
    sqlite:
      schema({ id: 'INTEGER PRIMARY KEY AUTOINCREMENT', date: 'TEXT', timestamp: 'TEXT' }) +
      BACKFILL_COUNTS +
      SQLITE_COUNT_TRIGGERS,
    postgres:
      schema({ id: 'INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY', date: 'DATE', timestamp: 'TIMESTAMP(0)' }) +
      BACKFILL_COUNTS +
      POSTGRES_COUNT_TRIGGERS,
  },
  {
    version: 2,
    name: 'usernames and emails unique whatever their case and Unicode form',
    sqlite: IDENTITY_COLUMNS,
    postgres: IDENTITY_COLUMNS,
    run: fillIdentityKeys,
  },
  {
    version: 3,
    name: 'staff, and a password version that tokens carry',
    sqlite: ACCESS_COLUMNS,
    postgres: ACCESS_COLUMNS,
  },
  {
    version: 4,
    name: 'failed logins and registrations counted per account and address; adoptions that make sense',
    sqlite: LIMIT_TABLES,
    postgres: LIMIT_TABLES,
    run: clearBadAdoptions,
  },
  {
    version: 5,
    name: 'the most common passwords, kept in the database',
    // A table of one text key is its own index in SQLite without a rowid: about half the file.
    // https://www.sqlite.org/withoutrowid.html
    sqlite: COMMON_PASSWORDS(' WITHOUT ROWID'),
    postgres: COMMON_PASSWORDS(''),
  },
]

/** The schema version this code needs: the API answers 503 on an older database. */
export const SCHEMA_VERSION = MIGRATIONS.at(-1)!.version

const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at TEXT NOT NULL
)`

/** The newest migration applied to the database: 0 when it has none (no schema_migrations table). */
export async function schemaVersion(db: Database): Promise<number> {
  try {
    const [[version]] = await db.values('SELECT MAX(version) FROM schema_migrations')
    return Number(version ?? 0)
  } catch (error) {
    if (faultOf(error) === 'no table') return 0
    throw error
  }
}

export interface MigrationResult {
  /** The version before and after. */
  from: number
  to: number
  applied: string[]
  /** What the migrations found and want a person to know (a clash of usernames, for one). */
  notes: string[]
}

/** Inside a transaction: another transaction that takes turns on `what` waits for this one to end. SQLite's
 * transaction() holds the write lock from its start (BEGIN IMMEDIATE) already; PostgreSQL takes an advisory lock, to
 * the transaction's end. https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-ADVISORY-LOCKS */
export async function takeTurns(tx: Database, what: 'schema' | 'sample' | 'copy' | 'common passwords'): Promise<void> {
  if (tx.kind === 'postgres') await tx.all('SELECT pg_advisory_xact_lock(hashtext(?))', [`buddy_system ${what}`])
}

/** Applies the missing migrations (up to `target`), all in one transaction; a second caller waits for the first. */
export async function migrate(db: Database, target = SCHEMA_VERSION): Promise<MigrationResult> {
  return db.transaction(async (tx) => {
    await takeTurns(tx, 'schema')
    await tx.exec(MIGRATIONS_TABLE)
    const from = await schemaVersion(tx)
    const applied: string[] = []
    const notes: string[] = []
    for (const migration of MIGRATIONS.filter((m) => m.version > from && m.version <= target)) {
      await tx.exec(tx.kind === 'postgres' ? migration.postgres : migration.sqlite)
      if (migration.run) notes.push(...(await migration.run(tx)))
      await tx.all('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [
        migration.version,
        migration.name,
        new Date().toISOString().slice(0, 19),
      ])
      applied.push(`${migration.version} ${migration.name}`)
    }
    return { from, to: Math.max(from, Math.min(target, SCHEMA_VERSION)), applied, notes }
  })
}

// The part of node:sqlite's DatabaseSync and better-sqlite3's Database that we use: the same in both.
interface SqliteStatement {
  all(...params: unknown[]): unknown[]
  run(...params: unknown[]): unknown
  /** better-sqlite3 only: false for a statement that returns no rows, which all() refuses. */
  reader?: boolean
  /** node:sqlite: rows as arrays. */
  setReturnArrays?(enabled: boolean): void
  /** better-sqlite3: rows as arrays. */
  raw?(enabled: boolean): unknown
}
interface SqliteDriver {
  prepare(sql: string): SqliteStatement
  exec(sql: string): void
  close(): void
}

async function loadSqlite(path: string): Promise<{ driver: SqliteDriver; name: string }> {
  // node:sqlite where its statements can return rows as arrays (setReturnArrays: Node 24, which the
  // Lambda nodejs24.x runtime has); better-sqlite3 on Node 20, and on a 22 without it.
  const builtin = await import('node:sqlite').catch(() => undefined)
  if (builtin?.StatementSync.prototype.setReturnArrays)
    return { driver: new builtin.DatabaseSync(path) as unknown as SqliteDriver, name: 'node:sqlite' }
  const addon = await import('better-sqlite3').catch((cause) => {
    throw new Error(`SQLite needs Node 24 (node:sqlite) or the better-sqlite3 package (npm install)`, { cause })
  })
  return { driver: new addon.default(path) as unknown as SqliteDriver, name: 'better-sqlite3' }
}

async function openSqlite(config: Extract<DbConfig, { kind: 'sqlite' }>): Promise<Database> {
  const { driver, name } = await loadSqlite(config.path)
  // WAL keeps its index in shared memory, which a network file system cannot share between
  // Lambda containers (https://www.sqlite.org/wal.html#sometimes_queries_return_sqlite_busy_in_wal_mode):
  // on EFS use the rollback journal, and wait for another container's lock instead of failing.
  // The wait comes first: node:sqlite opens with none (better-sqlite3 with 5 s), and setting journal_mode
  // reads the file, which fails at once while another container holds a write lock.
  driver.exec(`
    PRAGMA busy_timeout = ${WAIT_MS};
    PRAGMA journal_mode = ${config.onNetworkFs ? 'DELETE' : 'WAL'};
    PRAGMA foreign_keys = ON;
  `)
  // Each text is prepared once, and once more if its rows are read as arrays.
  const statements = new Map<string, SqliteStatement>()
  const arrayStatements = new Map<string, SqliteStatement>()
  const prepare = (sql: string, arrays = false) => {
    const cache = arrays ? arrayStatements : statements
    let statement = cache.get(sql)
    if (!statement) {
      statement = driver.prepare(sql)
      // better-sqlite3 takes raw() only on a statement that returns rows.
      if (arrays) statement.setReturnArrays ? statement.setReturnArrays(true) : statement.reader && statement.raw!(true)
      cache.set(sql, statement)
    }
    return statement
  }
  // SQLite binds neither booleans nor undefined.
  const bind = (params: unknown[]) => params.map((p) => (p === true ? 1 : p === false ? 0 : p === undefined ? null : p))
  let depth = 0 // 1 while transaction() runs
  const query = (sql: string, params: unknown[], arrays: boolean) => {
    const statement = prepare(sql, arrays)
    if (statement.reader === false) return (statement.run(...bind(params)), [])
    return statement.all(...bind(params))
  }
  const db: Database = {
    kind: 'sqlite',
    label: `SQLite ${config.path} (${name})`,
    async all<T>(sql: string, params: unknown[] = []) {
      return query(sql, params, false) as T[]
    },
    async values(sql: string, params: unknown[] = []) {
      return query(sql, params, true) as unknown[][]
    },
    async exec(sql: string) {
      driver.exec(sql)
    },
    // Every statement inside runs synchronously, so no other request's statements can
    // interleave with the transaction as long as `fn` awaits only this database.
    async transaction(fn) {
      if (depth > 0) return fn(db)
      depth++
      driver.exec('BEGIN IMMEDIATE')
      try {
        const result = await fn(db)
        driver.exec('COMMIT')
        return result
      } catch (error) {
        driver.exec('ROLLBACK')
        throw error
      } finally {
        depth--
      }
    },
    async close() {
      driver.close()
    },
  }
  return db
}

async function openPostgres(config: Extract<DbConfig, { kind: 'postgres' }>): Promise<Database> {
  // Imported here: node:fs takes ~6 ms to load on Node 24, which a cold start on SQLite does not need to pay.
  const { default: postgres } = await import('postgres')
  const { readFileSync } = await import('node:fs')
  const sql = postgres({
    host: config.host,
    port: config.port,
    username: config.username,
    password: config.iamRegion ? iamToken(config) : config.password,
    database: config.database,
    ssl:
      config.ssl === 'disable'
        ? false
        : {
            rejectUnauthorized: config.ssl === 'verify-full',
            ca: config.ssl === 'verify-full' && config.caFile ? readFileSync(config.caFile, 'utf8') : undefined,
            // PostgreSQL before 18 takes only P-256 (ssl_ecdh_curve = prime256v1); Node offers X25519 (and its ML-KEM hybrid) first, and the server's
            // HelloRetryRequest costs a round trip: https://github.com/postgres/postgres/commit/daa02c6bd9262adeb44f4a9ed9d94fa6259afd94
            ecdhCurve: 'P-256:X25519',
          },
    // No lookup of the server's array types at connect (a round trip): the API sends and reads no arrays.
    fetch_types: false,
    // One connection per Lambda container, closed when idle so a frozen container holds none, and made anew after
    // 14 minutes: an IAM token opens connections for 15 (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.html).
    max: 1,
    idle_timeout: 20,
    max_lifetime: 60 * 14,
    connect_timeout: Math.ceil(WAIT_MS / 1000),
    connection: { statement_timeout: WAIT_MS },
    onnotice: () => {},
    // Dates and timestamps stay ISO strings, as the API sends them: no time zone shifts.
    types: {
      date: {
        to: 1082,
        from: [1082, 1114],
        serialize: (x: string) => x,
        parse: (x: string) => x.replace(' ', 'T'),
      },
    },
  })
  const placeholders = (text: string) => {
    let n = 0
    return text.replace(/\?/g, () => `$${++n}`)
  }
  // Every query goes through sql.unsafe with its parameters bound (never quoted into the text): the SQL is written
  // once, with `?`, for both engines, where postgres.js's tagged templates would be PostgreSQL's alone.
  const wrap = (q: Sql | TransactionSql): Database => {
    const query = (text: string, params: unknown[]) => q.unsafe(placeholders(text), params as ParameterOrJSON<never>[])
    return {
      kind: 'postgres',
      label: `PostgreSQL ${config.host}:${config.port}/${config.database}`,
      // Plain arrays, as SQLite gives: postgres.js's result also carries the statement and more.
      async all<T>(text: string, params: unknown[] = []) {
        return Array.from(await query(text, params)) as T[]
      },
      async values(text: string, params: unknown[] = []) {
        return Array.from(await query(text, params).values()) as unknown[][]
      },
      async exec(text: string) {
        await q.unsafe(text)
      },
      async transaction(fn) {
        if (q !== sql) return fn(wrap(q))
        return (await sql.begin((tx) => fn(wrap(tx)))) as Awaited<ReturnType<typeof fn>>
      },
      async close() {
        await sql.end({ timeout: 5 })
      },
    }
  }
  return wrap(sql)
}

const NO_CREDENTIALS =
  'PG_AUTH=iam signs with the AWS credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), as Lambda gives a function its role\'s; elsewhere, `eval "$(aws configure export-credentials --format env)"` sets them'

/** The password of each new connection under IAM database authentication: a token, which is a SigV4 presigned URL
 * for `rds-db:connect` as this user at this endpoint, as @aws-sdk/rds-signer makes it (its getAuthToken), signed by
 * the SDK's own signer with the credentials Lambda puts in the function's environment (its role's): no credential
 * provider chain to load on a cold start, and no call to AWS, so it works in a VPC without a NAT.
 * https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.Connecting.html */
function iamToken(config: Extract<DbConfig, { kind: 'postgres' }>): () => Promise<string> {
  const sign = async () => {
    const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey } = process.env
    if (!accessKeyId || !secretAccessKey) throw new ConfigError(NO_CREDENTIALS)
    // Imported here: only an IAM deployment loads the signer (and node:crypto, for its SHA-256).
    const [{ SignatureV4 }, { createHash, createHmac }] = await Promise.all([
      import('@smithy/signature-v4'),
      import('node:crypto'),
    ])
    type Data = string | ArrayBuffer | ArrayBufferView
    const bytes = (data: Data) =>
      typeof data === 'string'
        ? data
        : ArrayBuffer.isView(data)
          ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
          : new Uint8Array(data)
    class Sha256 {
      #hash
      constructor(secret?: Data) {
        this.#hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret))
      }
      update(data: Data) {
        this.#hash.update(bytes(data))
      }
      async digest() {
        return new Uint8Array(this.#hash.digest())
      }
      reset() {}
    }
    const { host: hostname, port, username } = config
    const signer = new SignatureV4({
      service: 'rds-db',
      region: config.iamRegion!,
      credentials: { accessKeyId, secretAccessKey, sessionToken: process.env.AWS_SESSION_TOKEN || undefined },
      sha256: Sha256,
    })
    const presigned = await signer.presign(
      {
        method: 'GET',
        protocol: 'https:',
        hostname,
        port,
        path: '/',
        query: { Action: 'connect', DBUser: username },
        headers: { host: `${hostname}:${port}` },
      },
      { expiresIn: 900 },
    )
    // The URL without its scheme, as the SDK formats it: its query sorted, and escaped as RFC 3986 has it
    // (encodeURIComponent leaves !'()* as they are).
    const escape = (s: string) =>
      encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    const query = Object.entries(presigned.query ?? {})
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([key, value]) => `${escape(key)}=${escape(String(value))}`)
      .join('&')
    return `${hostname}:${port}/?${query}`
  }
  // The first token is signed now, while the first connection makes its TCP and TLS handshakes, rather than once
  // the server asks for it (loading the signer and its first run take ~5 ms: BENCHMARKS.md, the IAM cold start).
  let first: Promise<string> | undefined = sign()
  first.catch(() => {}) // a failure goes to the connection that takes the token, not to unhandledRejection
  return () => {
    const token = first ?? sign()
    first = undefined
    return token
  }
}

// The entities, as the API sends them.

export interface Animal {
  id: number
  name: string
  age: number
  kind: string
  fixed: boolean
  vaccinated: boolean
  intake_date: string
  adopter_id: number | null
  adoption_date: string | null
}
export interface User {
  id: number
  username: string
  email: string
  created_at: string
  is_staff: boolean
}
export interface Foster {
  animal: Animal
  user: User
  start_date: string
  end_date: string | null
}

/** An entity's columns, each with how its value is read, in one place: the SELECT list and the reading of a row (an
 * array, Database.values) are both made from it, so that a new column is one line. Both drivers' values come in:
 * SQLite's 0 and 1 for booleans, PostgreSQL's strings for BIGINT. */
function rowShape<T>(columns: { [K in keyof T]: (value: unknown) => T[K] }) {
  const names = Object.keys(columns) as (keyof T & string)[]
  return {
    /** The SELECT list, its columns prefixed (`a.`) where the query joins. */
    list: (prefix = '') => names.map((name) => prefix + name).join(', '),
    width: names.length,
    /** The entity in `row` from column `at` on. */
    read(row: unknown[], at = 0): T {
      const entity = {} as T
      names.forEach((name, i) => (entity[name] = columns[name](row[at + i])))
      return entity
    },
  }
}
const asNumber = (value: unknown) => Number(value)
const asText = (value: unknown) => value as string
const asBoolean = (value: unknown) => Boolean(value)
const orNull =
  <T>(read: (value: unknown) => T) =>
  (value: unknown) =>
    value == null ? null : read(value)

const ANIMAL_ROW = rowShape<Animal>({
  id: asNumber,
  name: asText,
  age: asNumber,
  kind: asText,
  fixed: asBoolean,
  vaccinated: asBoolean,
  intake_date: asText,
  adopter_id: orNull(asNumber),
  adoption_date: orNull(asText),
})
const USER_ROW = rowShape<User>({
  id: asNumber,
  username: asText,
  email: asText,
  created_at: asText,
  is_staff: asBoolean,
})
const ANIMAL = ANIMAL_ROW.list()
const USER = USER_ROW.list()
const toAnimal = (row: unknown[]) => ANIMAL_ROW.read(row)
const toUser = (row: unknown[]) => USER_ROW.read(row)

// For speed alone (the figures are in BENCHMARKS.md; each was measured against the plain form in the same run).

/** A page: LIMIT and OFFSET, each a CAST. SQLite plans a bare `LIMIT ?` with its bound value as a constant, so every
 * new binding recompiles the statement (13 µs a page query instead of 8, here); a CAST is an expression, and the
 * statement is compiled once. */
const PAGE = 'LIMIT CAST(? AS BIGINT) OFFSET CAST(? AS BIGINT)'

/** Whether SQLite should read a filtered page by walking the index of its sort order, not the intake window.
 * SQLite cannot tell how many animals a window holds (that takes ANALYZE's statistics, which nothing gathers
 * here, and for a range STAT4, which node:sqlite is built without), so it reads the whole window and sorts it,
 * however large: 14 ms for a page of a window of 20,000 animals. We know how many it holds, `count`. Walking
 * the sort order reads about (offset + limit) × animals / count rows to fill the page; the window, `count`
 * rows. When walking is cheaper, a unary + keeps SQLite off the intake_date index
 * (https://www.sqlite.org/optoverview.html#disqualifying_where_clause_terms_using_unary_).
 * PostgreSQL keeps statistics of its own, and plans this well. */
async function walkSortIndex(db: Database, q: AnimalQuery, count: number): Promise<boolean> {
  if (db.kind !== 'sqlite' || q.sort === 'intake_date' || !(q.intake_after || q.intake_before)) return false
  const [[top]] = await db.values('SELECT MAX(id) FROM animals') // how many animals, near enough for this
  return (q.offset + q.limit) * Number(top) < count * count
}

export const ANIMAL_SORTS = ['name', 'age', 'intake_date'] as const
export interface AnimalQuery {
  sort: (typeof ANIMAL_SORTS)[number]
  intake_after?: string
  intake_before?: string
  limit: number
  offset: number
}

export async function listAnimals(db: Database, q: AnimalQuery): Promise<{ count: number; animals: Animal[] }> {
  const bounds = (
    [
      ['>=', q.intake_after],
      ['<=', q.intake_before],
    ] as const
  ).filter(([, date]) => date)
  const params = bounds.map(([, date]) => date)
  const window = (column: string) =>
    bounds.length ? `WHERE ${bounds.map(([op]) => `${column} ${op} ?`).join(' AND ')}` : ''
  const [{ count }] = await db.all<{ count: number }>(
    `SELECT CAST(COALESCE(SUM(n), 0) AS INTEGER) AS count FROM animal_intake_counts ${window('intake_date')}`,
    params,
  )
  const column = (await walkSortIndex(db, q, Number(count))) ? '+intake_date' : 'intake_date'
  // `sort` is one of ANIMAL_SORTS (validated), never text from the request.
  const rows = await db.values(`SELECT ${ANIMAL} FROM animals ${window(column)} ORDER BY ${q.sort}, id ${PAGE}`, [
    ...params,
    q.limit,
    q.offset,
  ])
  return { count: Number(count), animals: rows.map(toAnimal) }
}

// Ids are PostgreSQL INTEGERs: a larger one names no row (and PostgreSQL would refuse to compare it). Every query by
// an id from a request goes through byId, which answers no row for one.
const MAX_ID = 2 ** 31 - 1
/** The rows of `sql`, whose last parameter is `id`. */
const byId = (db: Database, sql: string, id: number, params: unknown[] = []) =>
  id > MAX_ID ? Promise.resolve([]) : db.values(sql, [...params, id])
const GET_ANIMAL = `SELECT ${ANIMAL} FROM animals WHERE id = ?`
export async function getAnimal(db: Database, id: number): Promise<Animal | undefined> {
  const [row] = await byId(db, GET_ANIMAL, id)
  return row && toAnimal(row)
}

export type NewAnimal = Pick<Animal, 'name' | 'age' | 'kind' | 'fixed' | 'vaccinated' | 'intake_date'>

export async function createAnimal(db: Database, a: NewAnimal): Promise<Animal> {
  const [row] = await db.values(
    `INSERT INTO animals (name, age, kind, fixed, vaccinated, intake_date) VALUES (?, ?, ?, ?, ?, ?) RETURNING ${ANIMAL}`,
    [a.name, a.age, a.kind, a.fixed, a.vaccinated, a.intake_date],
  )
  return toAnimal(row)
}

export type AnimalChanges = Partial<Omit<Animal, 'id' | 'intake_date'>>
const CHANGEABLE = ['name', 'age', 'kind', 'fixed', 'vaccinated', 'adopter_id', 'adoption_date'] as const

export async function updateAnimal(db: Database, id: number, changes: AnimalChanges): Promise<Animal | undefined> {
  const columns = CHANGEABLE.filter((column) => changes[column] !== undefined)
  if (!columns.length) return getAnimal(db, id)
  const [row] = await byId(
    db,
    `UPDATE animals SET ${columns.map((c) => `${c} = ?`).join(', ')} WHERE id = ? RETURNING ${ANIMAL}`,
    id,
    columns.map((c) => changes[c]),
  )
  return row && toAnimal(row)
}

/** Deletes the animal and its fosters; false when there was no such animal. */
export async function deleteAnimal(db: Database, id: number): Promise<boolean> {
  return (await byId(db, 'DELETE FROM animals WHERE id = ? RETURNING id', id)).length > 0
}

export async function listUsers(db: Database, page: Page): Promise<{ count: number; users: User[] }> {
  const [[count]] = await db.values('SELECT COUNT(*) FROM users')
  const rows = await db.values(`SELECT ${USER} FROM users ORDER BY id ${PAGE}`, [page.limit, page.offset])
  return { count: Number(count), users: rows.map(toUser) }
}

const GET_USER = `SELECT ${USER} FROM users WHERE id = ?`
export async function getUser(db: Database, id: number): Promise<User | undefined> {
  const [row] = await byId(db, GET_USER, id)
  return row && toUser(row)
}

/** A user with what logging in and tokens need: their password hash, and the version of their password that a
 * token must carry (it moves on with each change of password). */
export interface Account {
  user: User
  passwordHash: string
  passwordVersion: number
}
const ACCOUNT = `${USER}, password_hash, password_version`
const toAccount = (row: unknown[]): Account => ({
  user: toUser(row),
  passwordHash: row[USER_ROW.width] as string,
  passwordVersion: Number(row[USER_ROW.width + 1]),
})

/** The account to log in to: by the name's key (JUNIPER is juniper), or its exact text. */
export async function findLogin(db: Database, username: string): Promise<Account | undefined> {
  const [row] = await db.values(
    `SELECT ${ACCOUNT} FROM users WHERE username_key = ? OR username = ? ORDER BY username = ? DESC, id LIMIT 1`,
    [identityKey(username), username, username],
  )
  return row && toAccount(row)
}

const GET_ACCOUNT = `SELECT ${ACCOUNT} FROM users WHERE id = ?`
/** The account of a token's user, by id. */
export async function getAccount(db: Database, id: number): Promise<Account | undefined> {
  const [row] = await byId(db, GET_ACCOUNT, id)
  return row && toAccount(row)
}

/** Stores a new password hash and moves the password version on, so that every token issued before is refused. */
export async function changePassword(db: Database, id: number, passwordHash: string): Promise<void> {
  await db.all('UPDATE users SET password_hash = ?, password_version = password_version + 1 WHERE id = ?', [
    passwordHash,
    id,
  ])
}

/** Makes the user of that name staff (or public, with `staff` false): the user, and whether anything changed;
 * undefined for an unknown name. The name is found as at login. */
export async function setStaff(
  db: Database,
  username: string,
  staff: boolean,
): Promise<{ user: User; changed: boolean } | undefined> {
  const account = await findLogin(db, username)
  if (!account) return undefined
  if (account.user.is_staff === staff) return { user: account.user, changed: false }
  await db.all('UPDATE users SET is_staff = ? WHERE id = ?', [staff, account.user.id])
  return { user: { ...account.user, is_staff: staff }, changed: true }
}

/** The usernames of the staff, by id. */
export async function staffNames(db: Database): Promise<string[]> {
  return (await db.values('SELECT username FROM users WHERE is_staff ORDER BY id')).map((row) => row[0] as string)
}

export interface NewUser {
  username: string
  email: string
  passwordHash: string
  created_at: string
}

/** Inserts the user, as typed, with its keys; a taken username or email throws a unique violation (see isUniqueViolation). */
export async function createUser(db: Database, u: NewUser): Promise<User> {
  const [row] = await db.values(
    `INSERT INTO users (username, username_key, email, email_key, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING ${USER}`,
    [u.username, identityKey(u.username), u.email, identityKey(u.email), u.passwordHash, u.created_at],
  )
  return toUser(row)
}

/** Which of username and email another user already has, by key. */
export async function takenField(
  db: Database,
  u: Pick<NewUser, 'username' | 'email'>,
): Promise<'username' | 'email' | undefined> {
  const key = identityKey(u.username)
  const [row] = await db.values('SELECT username_key FROM users WHERE username_key = ? OR email_key = ?', [
    key,
    identityKey(u.email),
  ])
  return row && (row[0] === key ? 'username' : 'email')
}

/** Deletes the user and their fosters, and clears them as adopter of their pets, with the adoption date. */
export async function deleteUser(db: Database, id: number): Promise<boolean> {
  return db.transaction(async (tx) => {
    await byId(tx, 'UPDATE animals SET adopter_id = NULL, adoption_date = NULL WHERE adopter_id = ? RETURNING id', id)
    return (await byId(tx, 'DELETE FROM users WHERE id = ? RETURNING id', id)).length > 0
  })
}

export interface Page {
  limit: number
  offset: number
}

/** A user's fosters, by start date, a page at a time, and how many there are. */
export async function listFosters(db: Database, user: User, page: Page): Promise<{ count: number; fosters: Foster[] }> {
  const [[count]] = await db.values('SELECT COUNT(*) FROM fosters WHERE user_id = ?', [user.id])
  const rows = await db.values(
    `SELECT ${ANIMAL_ROW.list('a.')}, f.start_date, f.end_date
     FROM fosters f JOIN animals a ON a.id = f.animal_id
     WHERE f.user_id = ? ORDER BY f.start_date, f.id ${PAGE}`,
    [user.id, page.limit, page.offset],
  )
  const fosters = rows.map((row) => ({
    animal: toAnimal(row),
    user,
    start_date: row[ANIMAL_ROW.width] as string,
    end_date: (row[ANIMAL_ROW.width + 1] as string | null) ?? null,
  }))
  return { count: Number(count), fosters }
}

/** The animals a user adopted, by adoption date, a page at a time, and how many there are. */
export async function listPets(
  db: Database,
  userId: number,
  page: Page,
): Promise<{ count: number; animals: Animal[] }> {
  const [[count]] = await db.values('SELECT COUNT(*) FROM animals WHERE adopter_id = ?', [userId])
  const rows = await db.values(
    `SELECT ${ANIMAL} FROM animals WHERE adopter_id = ? ORDER BY adoption_date, id ${PAGE}`,
    [userId, page.limit, page.offset],
  )
  return { count: Number(count), animals: rows.map(toAnimal) }
}

/** How long a new password may be, in characters (API.md). */
export const PASSWORD_LENGTH = { min: 8, max: 256 }

/** Whether a new password is among the most commonly used (compared in lowercase, as the list is written). An empty
 * list is a database the seeder has not given one yet: a SchemaError (503), never a password let through unchecked. */
export async function isCommonPassword(db: Database, password: string): Promise<boolean> {
  const [[common, loaded]] = await db.values(
    'SELECT EXISTS (SELECT 1 FROM common_passwords WHERE password = ?), EXISTS (SELECT 1 FROM common_passwords)',
    [password.toLowerCase()],
  )
  if (!loaded)
    throw new SchemaError(
      'The database holds no list of common passwords: deploy again (tsx deploy.ts efs|rds), or run `tsx seed.ts` for a database of your own.',
    )
  return Boolean(common)
}

// Passwords: scrypt, a slow salted KDF (RFC 7914), stored with its parameters so they can change later.
// N = 2^16, r = 8, p = 2 is one of the minimum settings in OWASP's Password Storage Cheat Sheet: the same
// work as N = 2^17, p = 1 (used before; those hashes still verify, and maxmem is for them) in half the
// memory, 64 MiB, so a login fits a 256 MB function with room (BENCHMARKS.md: peak memory in 256 MB).
const SCRYPT = { N: 2 ** 16, r: 8, p: 2, maxmem: 160 * 1024 * 1024 }

// node:crypto takes ~12 ms to load: imported on the first password, so that a cold start for a read does not pay it.
const nodeCrypto = async () => (await import('node:crypto')).default

async function scryptAsync(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  const crypto = await nodeCrypto()
  return new Promise((resolve, reject) => {
    crypto.scrypt(password, salt, keylen, options, (error, key) => (error ? reject(error) : resolve(key)))
  })
}

/** The hash of a random password nobody knows, with the parameters above: a login for an unknown user verifies
 * against it, at the cost of a real one (a test checks that its parameters are SCRYPT's). */
export const DUMMY_PASSWORD_HASH =
  'scrypt$65536$8$2$MR54+x5pK2e32mElOrNIzA==$WZXvdZ6HjFEqXRHqmbO0xFXi9GkCmwyHosprJuBtwmI='

export async function hashPassword(password: string): Promise<string> {
  const salt = (await nodeCrypto()).randomBytes(16)
  const hash = await scryptAsync(password, salt, 32, SCRYPT)
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), hash.toString('base64')].join('$')
}

// Failed logins and registrations (API.md, Limits). An account gets FREE_FAILURES wrong passwords, then waits a minute,
// twice as long after each further one, up to 15 minutes; a right password after the wait clears the count.
// A count ends a day after its last failure. A source address gets ADDRESS_LIMITS per quarter of an hour, counted in
// fixed quarter-hour windows (so at most twice as many across a window's edge); rows older than an hour go.
const FREE_FAILURES = 5
const FIRST_WAIT_MS = 60_000
const LONGEST_WAIT_MS = 15 * 60_000
const FAILURES_KEPT_MS = 24 * 3_600_000
export const ADDRESS_WINDOW_MS = 15 * 60_000
/** Per address and quarter of an hour. API.md asks room for a shelter's office behind one address, at least 20 of
 * each: 50 failed logins are 20 people mistyping twice and a few more; 30 registrations are an adoption day's desk
 * signing people up, one every half minute. An attacker from one address gets 50 guesses across all accounts. */
export const ADDRESS_LIMITS = { failed_login: 50, registration: 30 } as const
type AddressEvent = keyof typeof ADDRESS_LIMITS

/** The failed logins counted for `username`, and how long it must still wait before the next, in ms (0: not). */
export async function failedLogins(
  db: Database,
  username: string,
  now = Date.now(),
): Promise<{ count: number; wait: number }> {
  const [row] = await db.values('SELECT failures, blocked_until FROM login_failures WHERE username_key = ?', [
    identityKey(username),
  ])
  return { count: Number(row?.[0] ?? 0), wait: Math.max(0, Number(row?.[1] ?? 0) - now) }
}

/** Counts a failed login for `username`; answers the wait it now has (0 within the free failures). */
export async function recordLoginFailure(db: Database, username: string, now = Date.now()): Promise<number> {
  const key = identityKey(username)
  return db.transaction(async (tx) => {
    await tx.all('DELETE FROM login_failures WHERE last_failed_at < ?', [now - FAILURES_KEPT_MS])
    const [[failures]] = await tx.values(
      `INSERT INTO login_failures (username_key, failures, last_failed_at) VALUES (?, 1, ?)
       ON CONFLICT (username_key) DO UPDATE SET failures = login_failures.failures + 1, last_failed_at = EXCLUDED.last_failed_at
       RETURNING failures`,
      [key, now],
    )
    const over = Number(failures) - FREE_FAILURES // 0 at the last free failure: the first wait starts there
    const wait = over >= 0 ? Math.min(FIRST_WAIT_MS * 2 ** Math.min(over, 10), LONGEST_WAIT_MS) : 0
    if (wait) await tx.all('UPDATE login_failures SET blocked_until = ? WHERE username_key = ?', [now + wait, key])
    return wait
  })
}

/** A right password: the account's count starts again. */
export async function clearLoginFailures(db: Database, username: string): Promise<void> {
  await db.all('DELETE FROM login_failures WHERE username_key = ?', [identityKey(username)])
}

/** How long `address` must wait before its next `kind` (0: it may go on now), from its count in this window. */
export async function addressWait(
  db: Database,
  address: string,
  kind: AddressEvent,
  now = Date.now(),
): Promise<number> {
  const window = now - (now % ADDRESS_WINDOW_MS)
  const [row] = await db.values('SELECT n FROM address_counts WHERE address = ? AND kind = ? AND window_start = ?', [
    address,
    kind,
    window,
  ])
  return Number(row?.[0] ?? 0) >= ADDRESS_LIMITS[kind] ? window + ADDRESS_WINDOW_MS - now : 0
}

/** Counts one `kind` from `address` in this window. */
export async function recordAddressEvent(
  db: Database,
  address: string,
  kind: AddressEvent,
  now = Date.now(),
): Promise<void> {
  const window = now - (now % ADDRESS_WINDOW_MS)
  await db.transaction(async (tx) => {
    await tx.all('DELETE FROM address_counts WHERE window_start < ?', [window - 4 * ADDRESS_WINDOW_MS])
    await tx.all(
      `INSERT INTO address_counts (address, kind, window_start, n) VALUES (?, ?, ?, 1)
       ON CONFLICT (address, kind, window_start) DO UPDATE SET n = address_counts.n + 1`,
      [address, kind, window],
    )
  })
}

/** What a user with no usable password has (the sample's users on a deployment): no password verifies against it. */
export const NO_PASSWORD = 'none'

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, N, r, p, salt, hash] = stored.split('$')
  // No usable password: the same cost as a wrong one, so that timing does not tell it either.
  if (scheme !== 'scrypt' || !hash) return verifyPassword(password, DUMMY_PASSWORD_HASH).then(() => false)
  const expected = Buffer.from(hash, 'base64')
  const actual = await scryptAsync(password, Buffer.from(salt, 'base64'), expected.length, {
    N: Number(N),
    r: Number(r),
    p: Number(p),
    maxmem: SCRYPT.maxmem,
  })
  return (await nodeCrypto()).timingSafeEqual(actual, expected)
}
