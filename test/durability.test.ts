// A write that got a 2xx is never lost: the local server, on a real SQLite file, killed with SIGKILL in the
// middle of a stream of writes, in both journal modes (WAL for a local file, the rollback journal of EFS);
// then the file is opened again, checked whole, and searched for every acknowledged write.
import assert from 'node:assert/strict'
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { openDatabase } from '../db.ts'
import { commonPasswordList, setUp } from '../seed.ts'
import { run } from './cli.ts'

const ROUNDS = 20
const WRITERS = 4

const dir = mkdtempSync(join(tmpdir(), 'buddy-durability-'))
const template = join(dir, 'template.db')
before(async () => {
  const db = await openDatabase({ kind: 'sqlite', path: template, onNetworkFs: false })
  await setUp(db, 'local', await commonPasswordList())
  await db.close()
})
after(() => rmSync(dir, { recursive: true, force: true }))

const random = (low: number, high: number) => low + Math.floor(Math.random() * (high - low))

type Row = { name: string; age: number } | null
interface Acknowledged {
  /** Animal id → what its last 2xx said it holds (null once a DELETE got its 204), and the write sent after it,
   * whose answer the kill may have cut off: the row holds one or the other. */
  animals: Map<number, { acked: Row; pending?: Row }>
  count: number
}

/** Writers that create, update and delete animals until the server dies; what got a 2xx is recorded. */
async function write(url: string, token: string, round: number, acknowledged: Acknowledged, stop: AbortSignal) {
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` }
  const send = async (method: string, path: string, body?: object) => {
    const answer = await fetch(`${url}${path}`, { method, headers, body: body && JSON.stringify(body), signal: stop })
    const text = await answer.text()
    assert.ok(answer.ok, `${method} ${path}: ${answer.status} ${text}`)
    return text ? JSON.parse(text) : undefined
  }
  const writer = async (w: number) => {
    for (let i = 0; ; i++) {
      const name = `round ${round} writer ${w} animal ${i}`
      const { animal } = await send('POST', '/animals', { name, age: 1, kind: 'dog' })
      const state: { acked: Row; pending?: Row } = { acked: { name, age: 1 }, pending: { name, age: 2 } }
      acknowledged.animals.set(animal.id, state)
      acknowledged.count++
      await send('PUT', `/animals/${animal.id}`, { age: 2 })
      state.acked = state.pending!
      acknowledged.count++
      if (i % 3 === 0) {
        state.pending = null
        await send('DELETE', `/animals/${animal.id}`)
        state.acked = null
        acknowledged.count++
      }
      delete state.pending
    }
  }
  // Each writer ends when the server dies under it: a refused connection, a reset, or the abort.
  await Promise.allSettled(Array.from({ length: WRITERS }, (_, w) => writer(w)))
}

describe('SQLite under SIGKILL', () => {
  for (const [mode, location, journal] of [
    ['WAL', 'local', 'wal'],
    ['the rollback journal (EFS)', 'efs', 'delete'],
  ] as const) {
    it(
      `keeps every acknowledged write and an intact file, with ${mode}, over ${ROUNDS} kills`,
      { timeout: 300_000 },
      async () => {
        let writes = 0
        let midWrite = 0 // kills that left a hot rollback journal: in the middle of a transaction
        for (let round = 1; round <= ROUNDS; round++) {
          const path = join(dir, `${location}-${round}.db`)
          copyFileSync(template, path)
          const server = run(
            'api.ts',
            {
              DB_LOCATION: location,
              DB_PATH: path,
              PORT: '0',
              HOST: '127.0.0.1',
              JWT_KEY: '0123456789abcdef'.repeat(4),
            },
            [],
            undefined,
            true,
          )
          try {
            const [, url] = await server.waitFor(/API on (http:\/\/\S+)/)
            const login = await fetch(`${url}/auth/token`, {
              method: 'POST',
              headers: { 'content-type': 'application/x-www-form-urlencoded' },
              body: 'username=juniper&password=password',
            })
            const { access_token: token } = await login.json()
            const acknowledged: Acknowledged = { animals: new Map(), count: 0 }
            const stop = new AbortController()
            const writing = write(url, token, round, acknowledged, stop.signal)
            // Somewhere in the stream: after a few writes, at a random moment of a random one.
            const killAfter = random(10, 200)
            while (acknowledged.count < killAfter) await new Promise((resolve) => setTimeout(resolve, 1))
            await new Promise((resolve) => setTimeout(resolve, random(0, 5)))
            server.killGroup('SIGKILL')
            await server.exited
            stop.abort()
            await writing
            writes += acknowledged.count
            if (existsSync(`${path}-journal`)) midWrite++

            const db = await openDatabase({ kind: 'sqlite', path, onNetworkFs: location === 'efs' })
            try {
              assert.deepEqual(await db.values('PRAGMA integrity_check'), [['ok']], `round ${round}`)
              assert.deepEqual(await db.values('PRAGMA journal_mode'), [[journal]])
              for (const [id, { acked, pending }] of acknowledged.animals) {
                const rows = await db.all<{ name: string; age: number }>('SELECT name, age FROM animals WHERE id = ?', [
                  id,
                ])
                const found = rows.map((r) => ({ name: r.name, age: Number(r.age) }))[0] ?? null
                const allowed = pending === undefined ? [acked] : [acked, pending]
                assert.ok(
                  allowed.some((row) => JSON.stringify(row) === JSON.stringify(found)),
                  `round ${round}, animal ${id}: ${JSON.stringify(found)}, acknowledged ${JSON.stringify(acked)}`,
                )
              }
              // Rows nobody acknowledged: at most the creations in flight, one per writer.
              const [[created]] = await db.values('SELECT COUNT(*) FROM animals WHERE name LIKE ?', [
                `round ${round} %`,
              ])
              const acknowledgedRows = [...acknowledged.animals.values()].filter((a) => a.acked || a.pending).length
              assert.ok(
                Number(created) - acknowledgedRows <= WRITERS,
                `round ${round}: ${created} rows, ${acknowledgedRows} acknowledged`,
              )
            } finally {
              await db.close()
            }
          } finally {
            server.killGroup('SIGKILL')
          }
        }
        const during =
          location === 'efs' ? ` (${midWrite} in the middle of a transaction, its journal left behind)` : ''
        console.log(
          `${mode}: ${ROUNDS} kills${during}, ${writes} acknowledged writes, every one found, every file intact`,
        )
      },
    )
  }
})
