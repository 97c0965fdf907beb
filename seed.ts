// The database's lifecycle: `migrate` (db.ts) brings its schema up to date, and `seed` loads the sample
// data in fake_db.json into it, once in its life: into a new database, never again after (a deleted
// sample animal stays deleted). `tsx seed.ts` does both for the database that DB_LOCATION names; on
// Lambda, `handler` does the same when deploy.ts invokes the seeder function, and returns the counts.
import { readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { configFromEnv, createUser, hashPassword, migrate, openDatabase, type Database, type MigrationResult } from './db.ts'

/** fake_db.json: records keyed by the first version's string ids; a user's id is their username. */
export interface SampleData {
  animals: Record<string, { name: string; age: number; kind: string; fixed: boolean; vaccinated: boolean; intake_date: string }>
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

/** Every seeded user's password, as in the first version. */
export const SAMPLE_PASSWORD = 'password'

export function loadSample(file = new URL('./fake_db.json', import.meta.url)): SampleData {
  return JSON.parse(readFileSync(file, 'utf8'))
}

/** Loads the sample into a database that has never had it and holds no users or animals, in one
 * transaction, and records that it did (or that it found rows of its own): every later run adds nothing. */
export async function seed(db: Database, data: SampleData = loadSample()): Promise<SeedResult> {
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
  for (const username of Object.keys(data.users)) hashes.set(username, await hashPassword(SAMPLE_PASSWORD))

  return db.transaction(async (tx) => {
    // Another seeder may have loaded it while this one hashed; two at once take turns (SQLite's transaction
    // holds the write lock from its start; PostgreSQL's, this lock).
    if (tx.kind === 'postgres') await tx.all("SELECT pg_advisory_xact_lock(hashtext('buddy_system sample'))")
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
      const { id } = await createUser(tx, { username, email: user.email, passwordHash: hashes.get(username)!, created_at: user.created_at })
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
    const added = { users: userIds.size, animals: animalIds.size, fosters: data.fosters.length, adoptions: data.adoptions.length }
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
  if (result.sample === 'loaded') return `added ${users} users, ${animals} animals, ${fosters} fosters, ${adoptions} adoptions`
  if (result.sample === 'loaded before') return `nothing added: the sample was loaded on ${result.loaded_at}, and is loaded only once`
  return 'nothing added: the database had users or animals of its own, so the sample was not loaded'
}

/** Migrations, then the sample: what the seeder function, `tsx seed.ts` and the local server do. */
export async function setUp(db: Database): Promise<{ schema: MigrationResult; seed: SeedResult }> {
  const schema = await migrate(db)
  return { schema, seed: await seed(db) }
}

export function describeSetUp({ schema, seed }: Awaited<ReturnType<typeof setUp>>): string {
  const migrations = schema.applied.length
    ? `schema ${schema.from} → ${schema.to} (applied ${schema.applied.join('; ')})`
    : `schema at version ${schema.to}`
  return [`${migrations}; ${summarize(seed)}`, ...schema.notes.map((note) => `note: ${note}`)].join('\n')
}

// The seeder function's handler: it opens its own connection, sets the database up and closes it.
export async function handler() {
  let db: Database | undefined
  try {
    db = await openDatabase(configFromEnv())
    const result = await setUp(db)
    console.log(describeSetUp(result))
    return { statusCode: 200, body: JSON.stringify({ ...result.seed, schema: result.schema }) }
  } catch (error) {
    console.error('seeding failed:', error)
    return { statusCode: 500, body: JSON.stringify({ error: (error as Error).message }) }
  } finally {
    await db?.close()
  }
}

// Run as a command (`tsx seed.ts`, `node seed.mjs`); the name check keeps this out of a bundle that inlines seed.ts.
const script = process.argv[1] ?? ''
if (/seed\.[mc]?[jt]s$/.test(script) && import.meta.url === pathToFileURL(script).href) {
  let db: Database | undefined
  try {
    db = await openDatabase(configFromEnv())
    console.log(`${db.label}: ${describeSetUp(await setUp(db))}`)
  } catch (error) {
    console.error(`seeding failed: ${(error as Error).message}`)
    process.exitCode = 1
  } finally {
    await db?.close()
  }
}
