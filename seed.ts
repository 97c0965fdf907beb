// Loads the sample data in fake_db.json into the database, in one transaction, adding only
// what is not there yet. `tsx seed.ts` seeds the database that DB_LOCATION names; on Lambda,
// `handler` does the same and returns the counts.
import { closeDatabase, database, hashPassword, type Database } from './db.ts'

// Built-ins from process.getBuiltinModule, as in api.ts: an `import` of node:fs would load fs.promises too.
const { readFileSync } = process.getBuiltinModule('node:fs')
const { pathToFileURL } = process.getBuiltinModule('node:url')

/** fake_db.json: records keyed by the first version's string ids; a user's id is their username. */
export interface SampleData {
  animals: Record<string, { name: string; age: number; kind: string; fixed: boolean; vaccinated: boolean; intake_date: string }>
  users: Record<string, { email: string; created_at: string }>
  fosters: { user_id: string; animal_id: string; start_date: string; end_date: string | null }[]
  adoptions: { user_id: string; animal_id: string; adoption_date: string }[]
}

export interface SeedResult {
  user_count: number
  animal_count: number
  foster_count: number
  adoption_count: number
  /** What this run inserted: all zeros when the data was already there. */
  added: { users: number; animals: number; fosters: number; adoptions: number }
}

/** Every seeded user's password, as in the first version. */
export const SAMPLE_PASSWORD = 'password'

export function loadSample(file = new URL('./fake_db.json', import.meta.url)): SampleData {
  return JSON.parse(readFileSync(file, 'utf8'))
}

export async function seed(db: Database, data: SampleData = loadSample()): Promise<SeedResult> {
  const usernames = Object.keys(data.users)
  const existing = new Set<string>()
  for (const username of usernames) {
    const [row] = await db.all('SELECT id FROM users WHERE username = ?', [username])
    if (row) existing.add(username)
  }
  // Hashing is slow and asynchronous: do it before the transaction, and only for new users.
  const hashes = new Map<string, string>()
  for (const username of usernames) {
    if (!existing.has(username)) hashes.set(username, await hashPassword(SAMPLE_PASSWORD))
  }

  return db.transaction(async (tx) => {
    const added = { users: 0, animals: 0, fosters: 0, adoptions: 0 }
    const userIds = new Map<string, number>()
    for (const [username, user] of Object.entries(data.users)) {
      if (hashes.has(username)) {
        const inserted = await tx.all(
          'INSERT INTO users (username, email, password_hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id',
          [username, user.email, hashes.get(username), user.created_at],
        )
        added.users += inserted.length
      }
      const [row] = await tx.all<{ id: number }>('SELECT id FROM users WHERE username = ?', [username])
      if (!row) throw new Error(`cannot add user ${username}: another user has the email ${user.email}`)
      userIds.set(username, Number(row.id))
    }

    // Animals have no natural key in the sample; one with the same name, kind and intake date is the same animal.
    const animalIds = new Map<string, number>()
    for (const [key, a] of Object.entries(data.animals)) {
      let [row] = await tx.all<{ id: number }>(
        'SELECT id FROM animals WHERE name = ? AND kind = ? AND intake_date = ? ORDER BY id LIMIT 1',
        [a.name, a.kind, a.intake_date],
      )
      if (!row) {
        ;[row] = await tx.all<{ id: number }>(
          'INSERT INTO animals (name, age, kind, fixed, vaccinated, intake_date) VALUES (?, ?, ?, ?, ?, ?) RETURNING id',
          [a.name, a.age, a.kind, a.fixed, a.vaccinated, a.intake_date],
        )
        added.animals++
      }
      animalIds.set(key, Number(row.id))
    }

    const idOf = (map: Map<string, number>, what: string, key: string) => {
      const id = map.get(key)
      if (id === undefined) throw new Error(`fake_db.json refers to ${what} ${key}, which it does not define`)
      return id
    }
    for (const adoption of data.adoptions) {
      const changed = await tx.all(
        'UPDATE animals SET adopter_id = ?, adoption_date = ? WHERE id = ? AND adopter_id IS NULL RETURNING id',
        [idOf(userIds, 'user', adoption.user_id), adoption.adoption_date, idOf(animalIds, 'animal', adoption.animal_id)],
      )
      added.adoptions += changed.length
    }
    for (const foster of data.fosters) {
      const keys = [idOf(animalIds, 'animal', foster.animal_id), idOf(userIds, 'user', foster.user_id), foster.start_date]
      const [row] = await tx.all('SELECT id FROM fosters WHERE animal_id = ? AND user_id = ? AND start_date = ?', keys)
      if (!row) {
        await tx.all('INSERT INTO fosters (animal_id, user_id, start_date, end_date) VALUES (?, ?, ?, ?)', [
          ...keys,
          foster.end_date,
        ])
        added.fosters++
      }
    }
    return {
      user_count: userIds.size,
      animal_count: animalIds.size,
      foster_count: data.fosters.length,
      adoption_count: data.adoptions.length,
      added,
    }
  })
}

export function summarize(result: SeedResult): string {
  const { users, animals, fosters, adoptions } = result.added
  const counts = `${result.user_count} users, ${result.animal_count} animals, ${result.foster_count} fosters, ${result.adoption_count} adoptions`
  return users + animals + fosters + adoptions === 0
    ? `nothing new was added: the sample's ${counts} are all there already`
    : `added ${users} users, ${animals} animals, ${fosters} fosters, ${adoptions} adoptions (the sample has ${counts})`
}

// The seeder function's handler, as in the deployment guide: the counts, or the error.
export async function handler() {
  try {
    const result = await seed(await database())
    console.log(summarize(result))
    return { statusCode: 200, body: JSON.stringify(result) }
  } catch (error) {
    console.error('seeding failed:', error)
    return { statusCode: 500, body: JSON.stringify({ error: (error as Error).message }) }
  }
}

// Run as a command (`tsx seed.ts`, `node seed.mjs`); the name check keeps this out of a bundle that inlines seed.ts.
const script = process.argv[1] ?? ''
if (/seed\.[mc]?[jt]s$/.test(script) && import.meta.url === pathToFileURL(script).href) {
  try {
    const db = await database()
    console.log(`${db.label}: ${summarize(await seed(db))}`)
  } catch (error) {
    console.error(`seeding failed: ${(error as Error).message}`)
    process.exitCode = 1
  } finally {
    await closeDatabase()
  }
}
