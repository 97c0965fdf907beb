// The database's lifecycle: `migrate` (db.ts) brings its schema up to date, and `seed` loads the sample
// data in fake_db.json into it, once in its life: into a new database, never again after (a deleted
// sample animal stays deleted). `tsx seed.ts` does both for the database that DB_LOCATION names; on
// Lambda, `handler` does the same when deploy.ts invokes the seeder function, and returns the counts.
import { existsSync, readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import {
  configFromEnv,
  createUser,
  hashPassword,
  migrate,
  NO_PASSWORD,
  openDatabase,
  PASSWORD_LENGTH,
  setStaff,
  staffNames,
  takeTurns,
  type Database,
  type DbConfig,
  type MigrationResult,
} from './db.ts'

/** fake_db.json: records keyed by the first version's string ids; a user's id is their username. */
export interface SampleData {
  animals: Record<
    string,
    { name: string; age: number; kind: string; fixed: boolean; vaccinated: boolean; intake_date: string }
  >
  users: Record<string, { email: string; created_at: string }>
  fosters: { user_id: string; animal_id: string; start_date: string; end_date: string | null }[]
  adoptions: { user_id: string; animal_id: string; adoption_date: string }[]
}

export interface SeedResult {
  /** loaded: by this run; loaded before: by an earlier one; not loaded: the database had rows of its own. */
  sample: 'loaded' | 'loaded before' | 'not loaded'
  /** When the sample was loaded (or refused), as recorded in the database. */
  loaded_at: string
  user_count: number
  animal_count: number
  foster_count: number
  adoption_count: number
  /** What this run inserted: all zeros but on a database's first run. */
  added: { users: number; animals: number; fosters: number; adoptions: number }
}

/** Every seeded user's password on a person's own machine, as in the first version; and the sample user made staff
 * there, so that the first version's React client can add animals. */
export const SAMPLE_PASSWORD = 'password'
export const SAMPLE_STAFF = 'juniper'

/** Where the sample goes. `local`: a person's own machine (`npm start`, `tsx seed.ts`, whatever DB_LOCATION says),
 * where its users log in with SAMPLE_PASSWORD and SAMPLE_STAFF is staff. `deployed`: a database behind a public URL
 * (the seeder function on Lambda), where its users have no usable password and nobody is staff. */
export type SampleUse = 'local' | 'deployed'

export function loadSample(file = new URL('./fake_db.json', import.meta.url)): SampleData {
  return JSON.parse(readFileSync(file, 'utf8'))
}

/** Loads the sample into a database that has never had it and holds no users or animals, in one
 * transaction, and records that it did (or that it found rows of its own): every later run adds nothing. */
export async function seed(db: Database, use: SampleUse, data: SampleData = loadSample()): Promise<SeedResult> {
  const counts = {
    user_count: Object.keys(data.users).length,
    animal_count: Object.keys(data.animals).length,
    foster_count: data.fosters.length,
    adoption_count: data.adoptions.length,
  }
  const none = { users: 0, animals: 0, fosters: 0, adoptions: 0 }
  const before = await loadRecord(db)
  if (before) return { sample: 'loaded before', loaded_at: before, ...counts, added: none }
  // Hashing is slow and asynchronous: do it before the transaction.
  const hashes = new Map<string, string>()
  for (const username of Object.keys(data.users)) {
    hashes.set(username, use === 'local' ? await hashPassword(SAMPLE_PASSWORD) : NO_PASSWORD)
  }

  return db.transaction(async (tx) => {
    // Another seeder may have loaded it while this one hashed: two at once take turns.
    await takeTurns(tx, 'sample')
    const loaded = await loadRecord(tx)
    if (loaded) return { sample: 'loaded before', loaded_at: loaded, ...counts, added: none }
    const loaded_at = new Date().toISOString().slice(0, 19)
    const [[rows]] = await tx.values('SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM animals)')
    if (Number(rows) > 0) {
      await tx.all('INSERT INTO sample_loads (loaded_at, added_rows) VALUES (?, 0)', [loaded_at])
      return { sample: 'not loaded', loaded_at, ...counts, added: none }
    }

    const userIds = new Map<string, number>()
    for (const [username, user] of Object.entries(data.users)) {
      const { id } = await createUser(tx, {
        username,
        email: user.email,
        passwordHash: hashes.get(username)!,
        created_at: user.created_at,
      })
      userIds.set(username, id)
    }
    const animalIds = new Map<string, number>()
    for (const [key, a] of Object.entries(data.animals)) {
      const [row] = await tx.all<{ id: number }>(
        'INSERT INTO animals (name, age, kind, fixed, vaccinated, intake_date) VALUES (?, ?, ?, ?, ?, ?) RETURNING id',
        [a.name, a.age, a.kind, a.fixed, a.vaccinated, a.intake_date],
      )
      animalIds.set(key, Number(row.id))
    }
    const idOf = (map: Map<string, number>, what: string, key: string) => {
      const id = map.get(key)
      if (id === undefined) throw new Error(`fake_db.json refers to ${what} ${key}, which it does not define`)
      return id
    }
    for (const adoption of data.adoptions) {
      await tx.all('UPDATE animals SET adopter_id = ?, adoption_date = ? WHERE id = ?', [
        idOf(userIds, 'user', adoption.user_id),
        adoption.adoption_date,
        idOf(animalIds, 'animal', adoption.animal_id),
      ])
    }
    for (const foster of data.fosters) {
      await tx.all('INSERT INTO fosters (animal_id, user_id, start_date, end_date) VALUES (?, ?, ?, ?)', [
        idOf(animalIds, 'animal', foster.animal_id),
        idOf(userIds, 'user', foster.user_id),
        foster.start_date,
        foster.end_date,
      ])
    }
    if (use === 'local' && userIds.has(SAMPLE_STAFF)) await setStaff(tx, SAMPLE_STAFF, true)
    const added = {
      users: userIds.size,
      animals: animalIds.size,
      fosters: data.fosters.length,
      adoptions: data.adoptions.length,
    }
    const total = added.users + added.animals + added.fosters
    await tx.all('INSERT INTO sample_loads (loaded_at, added_rows) VALUES (?, ?)', [loaded_at, total])
    return { sample: 'loaded', loaded_at, ...counts, added }
  })
}

async function loadRecord(db: Database): Promise<string | undefined> {
  const [row] = await db.values('SELECT loaded_at FROM sample_loads ORDER BY loaded_at LIMIT 1')
  return row && String(row[0]).replace(' ', 'T')
}

export function summarize(result: SeedResult): string {
  const { users, animals, fosters, adoptions } = result.added
  if (result.sample === 'loaded')
    return `added ${users} users, ${animals} animals, ${fosters} fosters, ${adoptions} adoptions`
  if (result.sample === 'loaded before')
    return `nothing added: the sample was loaded on ${result.loaded_at}, and is loaded only once`
  return 'nothing added: the database had users or animals of its own, so the sample was not loaded'
}

// Common passwords: a new one is refused (api.ts). The list is zxcvbn-ts's, kept in the database rather than in the
// package: deploy.ts reads it here and sends it in the seeder's event; the commands read it here themselves.

/** zxcvbn-ts's most common passwords (from leaks; 49,233), those a new password could be: PASSWORD_LENGTH's. */
export async function commonPasswordList(): Promise<string[]> {
  const { dictionary } = await import('@zxcvbn-ts/language-common')
  return dictionary['passwords-common'].filter(
    (p) => p.length >= PASSWORD_LENGTH.min && p.length <= PASSWORD_LENGTH.max,
  )
}

export interface CommonPasswords {
  /** The passwords the database holds, and what this run added and removed to make them the list given. */
  count: number
  added: number
  removed: number
}

/** Makes the database's common passwords the list given (in lowercase, as they are compared), in one transaction:
 * only what differs is written, so that the same list again writes nothing. */
export async function loadCommonPasswords(db: Database, list: unknown): Promise<CommonPasswords> {
  const where = '{"commonPasswords"}'
  if (!Array.isArray(list) || list.some((p) => typeof p !== 'string' || !p || p.length > PASSWORD_LENGTH.max))
    throw new Error(`${where}: a list of passwords is expected, each 1 to ${PASSWORD_LENGTH.max} characters`)
  if (!list.length) throw new Error(`${where}: the list is empty, which would let every password through`)
  const wanted = new Set((list as string[]).map((p) => p.toLowerCase()))
  return db.transaction(async (tx) => {
    await takeTurns(tx, 'common passwords')
    const held = new Set((await tx.values('SELECT password FROM common_passwords')).map(([p]) => String(p)))
    const added = [...wanted].filter((p) => !held.has(p))
    const removed = [...held].filter((p) => !wanted.has(p))
    await inChunks(added, 1, (chunk) =>
      tx.all(`INSERT INTO common_passwords (password) VALUES ${chunk.map(() => '(?)').join(', ')}`, chunk),
    )
    await inChunks(removed, 1, (chunk) =>
      tx.all(`DELETE FROM common_passwords WHERE password IN (${chunk.map(() => '?').join(', ')})`, chunk),
    )
    return { count: wanted.size, added: added.length, removed: removed.length }
  })
}

async function heldCommonPasswords(db: Database): Promise<CommonPasswords> {
  const [[count]] = await db.values('SELECT COUNT(*) FROM common_passwords')
  return { count: Number(count), added: 0, removed: 0 }
}

export function describeCommonPasswords({ count, added, removed }: CommonPasswords): string {
  if (!count) return 'no common passwords: new passwords are refused (503) until a deploy loads them'
  const changes = [added && `${added} added`, removed && `${removed} removed`].filter(Boolean)
  return `${count} common passwords${changes.length ? ` (${changes.join(', ')})` : ''}`
}

export interface SetUpResult {
  schema: MigrationResult
  seed: SeedResult
  /** The usernames of the staff. */
  staff: string[]
  commonPasswords: CommonPasswords
}

/** Migrations, the sample, and the common passwords where given: what the seeder function, `tsx seed.ts` and the
 * local server do. */
export async function setUp(db: Database, use: SampleUse, commonPasswords?: string[]): Promise<SetUpResult> {
  const schema = await migrate(db)
  return {
    schema,
    seed: await seed(db, use),
    staff: await staffNames(db),
    commonPasswords: commonPasswords ? await loadCommonPasswords(db, commonPasswords) : await heldCommonPasswords(db),
  }
}

export const describeSchema = (schema: MigrationResult) =>
  schema.applied.length
    ? `schema ${schema.from} → ${schema.to} (applied ${schema.applied.join('; ')})`
    : `schema at version ${schema.to}`

export function describeSetUp({ schema, seed, staff, commonPasswords }: SetUpResult): string {
  return [
    `${describeSchema(schema)}; ${summarize(seed)}; ${describeStaff(staff)}; ${describeCommonPasswords(commonPasswords)}`,
    ...schema.notes.map((note) => `note: ${note}`),
  ].join('\n')
}

export const describeStaff = (staff: string[]) =>
  staff.length ? `staff: ${staff.join(', ')}` : 'no staff yet: nobody can change animals'

// Staff: no route makes a user staff, so that no user can raise themself; whoever holds the database does, by name.

/** There is no user of that name. */
export class UnknownUser extends Error {
  override name = 'UnknownUser'
}

export interface StaffChange {
  username: string
  /** What was done: `unchanged` where the user was so already. */
  change: 'granted' | 'revoked' | 'unchanged'
  /** The usernames of the staff, after it. */
  staff: string[]
}

/** Makes the user of that name staff, or public again (`revoke`), after bringing the schema up to date. */
export async function changeStaff(db: Database, username: string, revoke = false): Promise<StaffChange> {
  await migrate(db)
  const result = await setStaff(db, username, !revoke)
  if (!result)
    throw new UnknownUser(`there is no user named ${JSON.stringify(username)} in ${db.label}: nothing changed`)
  const change = !result.changed ? 'unchanged' : revoke ? 'revoked' : 'granted'
  return { username: result.user.username, change, staff: await staffNames(db) }
}

export function describeStaffChange({ username, change, staff }: StaffChange): string {
  const what = {
    granted: `${username} is staff now`,
    revoked: `${username} is no longer staff`,
    unchanged: staff.includes(username)
      ? `${username} was staff already`
      : `${username} was not staff: nothing changed`,
  }
  return `${what[change]}; ${describeStaff(staff)}`
}

// Copies: a whole database into another (the EFS file into RDS, a local file into PostgreSQL), keeping every id.

/** The tables a copy moves, parents first, and what each column holds: both sides are read into the same values,
 * to be compared (SQLite has 0 and 1 for booleans, PostgreSQL true and false). */
const COPIED = {
  users: {
    id: 'int',
    username: 'text',
    username_key: 'text',
    email: 'text',
    email_key: 'text',
    password_hash: 'text',
    created_at: 'time',
    is_staff: 'bool',
    password_version: 'int',
  },
  animals: {
    id: 'int',
    name: 'text',
    age: 'int',
    kind: 'text',
    fixed: 'bool',
    vaccinated: 'bool',
    intake_date: 'time',
    adopter_id: 'int',
    adoption_date: 'time',
  },
  fosters: { id: 'int', animal_id: 'int', user_id: 'int', start_date: 'time', end_date: 'time' },
  sample_loads: { loaded_at: 'time', added_rows: 'int' },
} as const
type Table = keyof typeof COPIED
const WITH_IDS = ['users', 'animals', 'fosters'] as const

export interface CopyResult {
  /** copied: by this run; copied before: the target held exactly these rows already (an earlier copy). */
  status: 'copied' | 'copied before'
  counts: { users: number; animals: number; fosters: number }
}

/** The target holds rows of its own: nothing was copied. */
export class CopyRefused extends Error {
  override name = 'CopyRefused'
}

/** A table's rows, in order (of id, where it has one; `page`: only those after an id, so many at most). */
async function rowsOf(db: Database, table: Table, page?: { after: number; limit: number }): Promise<unknown[][]> {
  const columns = COPIED[table]
  const names = Object.keys(columns)
  const rows = await db.values(
    `SELECT ${names.join(', ')} FROM ${table}${page ? ' WHERE id > ?' : ''} ORDER BY ${'id' in columns ? 'id' : names.join(', ')}${page ? ' LIMIT ?' : ''}`,
    page ? [page.after, page.limit] : [],
  )
  const kinds = Object.values(columns)
  return rows.map((row) =>
    row.map((value, i) => {
      if (value === null) return null
      if (kinds[i] === 'int') return Number(value)
      if (kinds[i] === 'bool') return Boolean(value)
      return kinds[i] === 'time' ? String(value).replace(' ', 'T') : String(value)
    }),
  )
}

/** The largest id each table ever gave, deleted rows' included: SQLite's AUTOINCREMENT keeps it in sqlite_sequence,
 * PostgreSQL in the identity's sequence. A copy goes on from there, so that no id is given twice (an old token, or
 * a link, would otherwise name whoever gets a deleted user's id). https://www.sqlite.org/autoinc.html */
async function lastIds(db: Database): Promise<Record<(typeof WITH_IDS)[number], number>> {
  const last = { users: 0, animals: 0, fosters: 0 }
  for (const table of WITH_IDS) {
    const [[given, largest]] = await db.values(
      db.kind === 'sqlite'
        ? `SELECT (SELECT seq FROM sqlite_sequence WHERE name = '${table}'), (SELECT MAX(id) FROM ${table})`
        : `SELECT pg_sequence_last_value(pg_get_serial_sequence('${table}', 'id')), (SELECT MAX(id) FROM ${table})`,
    )
    last[table] = Math.max(Number(given ?? 0), Number(largest ?? 0))
  }
  return last
}

/** Has each table's next id follow `last`, as if the target had given those ids itself. */
async function continueIds(tx: Database, last: Record<(typeof WITH_IDS)[number], number>) {
  for (const table of WITH_IDS) {
    if (tx.kind === 'postgres') {
      await tx.all(`SELECT setval(pg_get_serial_sequence('${table}', 'id'), CAST(? AS BIGINT), CAST(? AS BOOLEAN))`, [
        Math.max(last[table], 1),
        last[table] > 0,
      ])
    } else {
      await tx.all('DELETE FROM sqlite_sequence WHERE name = ?', [table])
      await tx.all('INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)', [table, last[table]])
    }
  }
}

async function insertAll(tx: Database, table: Table, rows: unknown[][]) {
  const names = Object.keys(COPIED[table])
  await inChunks(rows, names.length, (chunk) => {
    const values = chunk.map(() => `(${names.map(() => '?').join(', ')})`).join(', ')
    return tx.all(`INSERT INTO ${table} (${names.join(', ')}) VALUES ${values}`, chunk.flat())
  })
}

/** Runs `statement` on the items a chunk at a time, each binding `perItem` values: SQLite before 3.32 binds 999 values
 * at most in one statement. */
async function inChunks<T>(items: T[], perItem: number, statement: (chunk: T[]) => Promise<unknown>) {
  const size = Math.floor(999 / perItem)
  for (let i = 0; i < items.length; i += size) await statement(items.slice(i, i + size))
}

/** Copies every user, animal and foster (and the record of the sample's load) from one database into another that
 * holds none, in one transaction, keeping their ids: a failure leaves the target as it was. Both are migrated first.
 * A target that holds exactly the source's rows is an earlier copy: nothing is done; one with other rows is refused. */
export async function copyDatabase(from: Database, to: Database): Promise<CopyResult> {
  const isOurs = await from.values('SELECT COUNT(*) FROM animals').then(
    () => true,
    () => false,
  )
  if (!isOurs)
    throw new CopyRefused(`${from.label} is not a buddy system database (it has no animals): nothing was copied`)
  await migrate(from)
  await migrate(to)
  // One moment of the source: every read in one transaction, which on SQLite holds the write lock (BEGIN IMMEDIATE),
  // so that no write lands between two tables (an API container finishing a request, on EFS, during a move).
  const { source, last } = await from.transaction(async (tx) => {
    const source = {} as Record<Table, unknown[][]>
    for (const table of Object.keys(COPIED) as Table[]) source[table] = await rowsOf(tx, table)
    return { source, last: await lastIds(tx) }
  })
  const counts = { users: source.users.length, animals: source.animals.length, fosters: source.fosters.length }
  const countsOf = async (db: Database) => {
    const [[users, animals, fosters]] = await db.values(
      'SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM animals), (SELECT COUNT(*) FROM fosters)',
    )
    return { users: Number(users), animals: Number(animals), fosters: Number(fosters) }
  }
  return to.transaction(async (tx) => {
    await takeTurns(tx, 'copy') // two copies at once take turns
    const held = await countsOf(tx)
    if (held.users + held.animals + held.fosters > 0) {
      for (const table of WITH_IDS) {
        if (JSON.stringify(await rowsOf(tx, table)) !== JSON.stringify(source[table])) {
          throw new CopyRefused(
            `${to.label} holds ${held.users} users, ${held.animals} animals and ${held.fosters} fosters ` +
              `that are not ${from.label}'s: nothing was copied. Copy into an empty database.`,
          )
        }
      }
      return { status: 'copied before', counts }
    }
    for (const table of Object.keys(COPIED) as Table[]) await insertAll(tx, table, source[table])
    await continueIds(tx, last)
    const copied = await countsOf(tx)
    if (JSON.stringify(copied) !== JSON.stringify(counts)) {
      throw new Error(
        `the copy holds ${JSON.stringify(copied)}, the source ${JSON.stringify(counts)}: nothing was copied`,
      )
    }
    return { status: 'copied', counts }
  })
}

// Exports: the whole database, a page at a time, into a SQLite file of npm start's schema (deploy.ts export). Each
// page is one answer of the seeder function, which Lambda caps at 6 MB: a page holds EXPORT_ROWS rows at most, and
// fewer where they would pass EXPORT_BYTES. https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html

export const EXPORTED = Object.keys(COPIED) as Table[]
const EXPORT_ROWS = 1000
const EXPORT_BYTES = 4_000_000

/** What the seeder is asked for one page: a table's rows after the id `after` (a table without ids comes whole). */
export interface ExportRequest {
  table: Table
  after?: number
}

export interface ExportPage {
  table: Table
  columns: string[]
  rows: unknown[][]
  /** The id to ask after for the next page; none once the table is done. */
  next?: number
  /** The table's rows, and the largest ids ever given, as the database holds them when this page was read. */
  count: number
  lastIds: Record<(typeof WITH_IDS)[number], number>
}

export async function exportPage(db: Database, { table, after = 0 }: ExportRequest): Promise<ExportPage> {
  if (!EXPORTED.includes(table)) throw new Error(`{"export": {"table": ${JSON.stringify(table)}}}: no such table`)
  await migrate(db)
  return db.transaction(async (tx) => {
    const keyed = 'id' in COPIED[table]
    const rows = await rowsOf(tx, table, keyed ? { after, limit: EXPORT_ROWS } : undefined)
    let bytes = 0
    const page = rows.filter((row, i) => (bytes += JSON.stringify(row).length) <= EXPORT_BYTES || i === 0)
    const [[count]] = await tx.values(`SELECT COUNT(*) FROM ${table}`)
    const more = keyed && (page.length < rows.length || rows.length === EXPORT_ROWS)
    return {
      table,
      columns: Object.keys(COPIED[table]),
      rows: page,
      next: more ? Number(page.at(-1)![0]) : undefined,
      count: Number(count),
      lastIds: await lastIds(tx),
    }
  })
}

/** Writes a page into the export's file; after the last, its ids go on from the source's. */
export async function importPage(db: Database, page: ExportPage): Promise<void> {
  if (JSON.stringify(page.columns) !== JSON.stringify(Object.keys(COPIED[page.table])))
    throw new Error(`the seeder's ${page.table} has the columns ${page.columns.join(', ')}: deploy first, then export`)
  await db.transaction(async (tx) => {
    await insertAll(tx, page.table, page.rows)
    if (page.next === undefined) await continueIds(tx, page.lastIds)
  })
}

/** Each exported table's rows, as the file holds them. */
export async function countRows(db: Database): Promise<Record<Table, number>> {
  const counts = {} as Record<Table, number>
  for (const table of EXPORTED) counts[table] = Number((await db.values(`SELECT COUNT(*) FROM ${table}`))[0][0])
  return counts
}

type SqliteConfig = Extract<DbConfig, { kind: 'sqlite' }>

/** The SQLite file to copy from: one that is there (SQLite would make an empty one, and the copy be of nothing). */
async function openSource(config: SqliteConfig): Promise<Database> {
  if (!existsSync(config.path)) throw new CopyRefused(`${config.path}: no such file, so nothing to copy`)
  return openDatabase(config)
}

export function describeCopy({ status, counts }: CopyResult, from: string, to: string): string {
  const what = `${counts.users} users, ${counts.animals} animals and ${counts.fosters} fosters`
  return status === 'copied'
    ? `copied ${what} from ${from} into ${to}, with their ids`
    : `nothing copied: ${to} holds ${from}'s ${what} already (an earlier copy)`
}

// IAM database authentication (deploy.ts rds): the functions log in with a token as the API's own role, never with
// a password. https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.DBAccounts.html

/** Creates `role`, the one the functions log in as (RDS takes IAM tokens from members of rds_iam), lets it create
 * tables, and hands it what the master user made in the schema before (a deployment that used the password), so that
 * its migrations can change them. Run as the master user. */
export async function createApiRole(master: Database, role: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]*$/.test(role))
    throw new Error(`${role}: an API role's name is lowercase letters, digits and _`)
  await master.exec(`
    DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}') THEN CREATE ROLE ${role} LOGIN; END IF;
    END $$;
    GRANT rds_iam TO ${role};
    GRANT USAGE, CREATE ON SCHEMA public TO ${role};
    GRANT ${role} TO CURRENT_USER; -- from PostgreSQL 16 on, a role's creator hands it objects only as its member
    DO $$ DECLARE object record; me oid := (SELECT oid FROM pg_roles WHERE rolname = current_user); BEGIN
      FOR object IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') AND c.relowner = me LOOP
        EXECUTE format('ALTER TABLE public.%I OWNER TO ${role}', object.relname); -- with its identity sequences
      END LOOP;
      FOR object IN SELECT p.oid::regprocedure AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'public' AND p.proowner = me LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO ${role}', object.signature);
      END LOOP;
    END $$;
  `)
}

/** The API role cannot log in as it does not exist yet (or is no member of rds_iam): deploy.ts invokes again with the
 * master's password. Lambda reports a thrown error's `name` as its errorType, so that the caller can tell this one. */
export class NeedsMaster extends Error {
  override name = 'NeedsMaster'
}

/** The API role exists, and RDS refused its IAM token: IAM authentication not enabled (yet), or the role's connect
 * policy not (yet) in effect. A new master password would change nothing. */
export class TokenRefused extends Error {
  override name = 'TokenRefused'
}

/** What a refused login means. RDS checks a token through PAM for members of rds_iam only ("PAM authentication
 * failed"); any other user, one that does not exist included, meets password authentication, which fails without
 * saying whether the role exists. https://repost.aws/knowledge-center/aurora-postgresql-connect-iam */
export function loginFailure(error: unknown): Error | undefined {
  const { code, message } = (error ?? {}) as { code?: string; message?: string }
  if (!['28000', '28P01'].includes(String(code))) return undefined
  const Failure = /PAM authentication failed/.test(String(message)) ? TokenRefused : NeedsMaster
  return new Failure(String(message), { cause: error })
}

/** PostgreSQL's connections: how many it takes, and how many of those it keeps for superusers (RDS keeps some more for
 * its own rdsadmin). deploy.ts reserves the API's concurrency from what is left, one connection per container. */
export interface Connections {
  max: number
  reserved: number
}

async function connectionsOf(db: Database): Promise<Connections | undefined> {
  if (db.kind !== 'postgres') return undefined
  const [[max, reserved, rds]] = await db.values(
    `SELECT current_setting('max_connections'), current_setting('superuser_reserved_connections'),
      current_setting('rds.rds_superuser_reserved_connections', true)`,
  )
  return { max: Number(max), reserved: Number(reserved) + Number(rds ?? 0) }
}

/** What the seeder is asked to do: nothing named (migrations and the sample), a copy (`from`: "efs" on Lambda, a
 * file for the command), or a change of staff (with no username: only the list). A set up or a copy also makes the
 * database's common passwords the list given (commonPasswordList's, from deploy.ts). */
export interface SeederTask {
  from?: string
  staff?: { username?: string; revoke?: boolean }
  export?: ExportRequest
  commonPasswords?: string[]
}

/** What deploy.ts sends the seeder function: a task, and with it, once, the master user's password, to create the
 * API role first. The password is never stored, nor logged. */
export interface SeederEvent extends SeederTask {
  master?: { username: string; password: string }
}

/** The seeder's answer: what it did, as data, and as the sentence its callers print (`summary`). */
export type SeederAnswer =
  | ({ task: 'set up'; summary: string; connections?: Connections } & SetUpResult)
  | ({ task: 'copy'; summary: string; connections?: Connections; commonPasswords?: CommonPasswords } & CopyResult)
  | ({ task: 'staff'; summary: string } & StaffChange)
  | { task: 'staff list'; summary: string; staff: string[] }
  | ({ task: 'export'; summary: string } & ExportPage)

/** One run of the seeder on `db`: the Lambda handler's and the command's. `source` opens what a copy reads. */
export async function runSeeder(
  db: Database,
  task: SeederTask,
  use: SampleUse,
  source: (from: string) => Promise<Database>,
): Promise<SeederAnswer> {
  const asked = [task.from, task.staff, task.export].filter((t) => t !== undefined)
  if (asked.length > 1) throw new Error('a copy, a change of staff and an export go separately')
  const { commonPasswords } = task
  if (commonPasswords !== undefined && (task.staff !== undefined || task.export !== undefined))
    throw new Error('{"commonPasswords"} goes with a set up or a copy, not with a change of staff or an export')
  if (task.export !== undefined) {
    const page = await exportPage(db, task.export)
    return { task: 'export', summary: `${page.table}: ${page.rows.length} of ${page.count}`, ...page }
  }
  if (task.staff !== undefined) {
    const { username, revoke } = task.staff ?? {}
    if (username === undefined) {
      const staff = await staffNames(db)
      return { task: 'staff list', summary: describeStaff(staff), staff }
    }
    if (typeof username !== 'string' || !username) throw new Error('{"staff": {"username"}}: the username is missing')
    const change = await changeStaff(db, username, revoke === true)
    return { task: 'staff', summary: describeStaffChange(change), ...change }
  }
  if (task.from !== undefined) {
    const from = await source(task.from)
    try {
      const copy = await copyDatabase(from, db)
      const common = commonPasswords && (await loadCommonPasswords(db, commonPasswords))
      const summary = [describeCopy(copy, from.label, db.label), ...(common ? [describeCommonPasswords(common)] : [])]
      const connections = await connectionsOf(db)
      return { task: 'copy', summary: summary.join('; '), ...copy, connections, commonPasswords: common }
    } finally {
      await from.close()
    }
  }
  const result = await setUp(db, use, commonPasswords)
  return { task: 'set up', summary: describeSetUp(result), ...result, connections: await connectionsOf(db) }
}

const failure = (task: SeederTask) =>
  task.from !== undefined
    ? 'copying failed'
    : task.staff !== undefined
      ? 'changing staff failed'
      : task.export !== undefined
        ? 'exporting failed'
        : 'seeding failed'

// The seeder function's handler: it opens its own connection, does the task and closes it. Invoked with
// {"from": "efs"} (deploy.ts rds --from-efs), it copies the file on EFS into the database instead of seeding it.
// It answers a plain object, and throws on failure: Lambda then reports a FunctionError, with the error's name and
// message (https://docs.aws.amazon.com/lambda/latest/dg/nodejs-exceptions.html).
export async function handler(event: SeederEvent = {}): Promise<SeederAnswer> {
  const dbs: Database[] = []
  try {
    const config = configFromEnv()
    if (event.master) {
      if (config.kind !== 'postgres') throw new Error('{"master"} is for PostgreSQL: DB_LOCATION is not rds')
      const master = await openDatabase({
        ...config,
        username: event.master.username,
        password: event.master.password,
        iamRegion: undefined,
      })
      dbs.push(master)
      await createApiRole(master, config.username)
    }
    const db = await openDatabase(config)
    dbs.push(db)
    // The seeder function serves a deployment, whose URL is public: its sample users get no usable password.
    const answer = await runSeeder(db, event, 'deployed', async (from) => {
      if (from !== 'efs') throw new Error(`{"from": ${JSON.stringify(from)}}: the seeder copies from "efs" only`)
      return openSource(configFromEnv({ ...process.env, DB_LOCATION: 'efs' }) as SqliteConfig)
    })
    console.log(answer.summary)
    return answer
  } catch (error) {
    console.error(`${failure(event)}:`, error)
    throw loginFailure(error) ?? error
  } finally {
    for (const db of dbs) await db.close()
  }
}

// Run as a command (`tsx seed.ts`, `node seed.mjs`); the name check keeps this out of a bundle that inlines seed.ts.
const script = process.argv[1] ?? ''
if (/seed\.[mc]?[jt]s$/.test(script) && import.meta.url === pathToFileURL(script).href) {
  // `tsx seed.ts --from ./buddy_system.db`: a copy of that SQLite file instead of the sample.
  // `tsx seed.ts --staff USERNAME [--revoke]`: make that user staff, or public again.
  // `tsx seed.ts --common-passwords`: print the list of common passwords a set up loads, as JSON (deploy.ts --dry-run).
  const usage = 'usage: tsx seed.ts [--from ./buddy_system.db | --staff USERNAME [--revoke] | --common-passwords]'
  const { values } = (() => {
    try {
      const parsed = parseArgs({
        options: {
          from: { type: 'string' },
          staff: { type: 'string' },
          revoke: { type: 'boolean' },
          'common-passwords': { type: 'boolean' },
        },
      })
      if (parsed.values['common-passwords'] && Object.keys(parsed.values).length > 1)
        throw new Error('--common-passwords goes alone')
      if (parsed.values.from !== undefined && parsed.values.staff !== undefined)
        throw new Error('--from and --staff go separately')
      if (parsed.values.revoke && parsed.values.staff === undefined)
        throw new Error('--revoke goes with --staff USERNAME')
      return parsed
    } catch (error) {
      console.error(`${(error as Error).message}\n${usage}`)
      process.exit(2)
    }
  })()
  if (values['common-passwords']) {
    const list = JSON.stringify(await commonPasswordList())
    await new Promise((written) => process.stdout.write(list, written))
    process.exit()
  }
  const task: SeederTask = {
    from: values.from,
    staff: values.staff === undefined ? undefined : { username: values.staff, revoke: values.revoke },
  }
  let db: Database | undefined
  try {
    if (task.staff === undefined) task.commonPasswords = await commonPasswordList()
    db = await openDatabase(configFromEnv())
    // A person's own machine: the sample's users log in with SAMPLE_PASSWORD, and SAMPLE_STAFF is staff.
    const answer = await runSeeder(db, task, 'local', (from) =>
      openSource({ kind: 'sqlite', path: from, onNetworkFs: false }),
    )
    console.log(answer.task === 'copy' ? answer.summary : `${db.label}: ${answer.summary}`)
    if (answer.task === 'set up' && answer.seed.sample === 'loaded')
      console.log(`Log in as ${SAMPLE_STAFF} (staff) or any sample user with the password "${SAMPLE_PASSWORD}".`)
  } catch (error) {
    console.error(`${failure(task)}: ${(error as Error).message}`)
    process.exitCode = 1
  } finally {
    await db?.close()
  }
}
