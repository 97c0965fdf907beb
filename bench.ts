// npm run bench: how fast and how small the API is, each figure beside a baseline measured in the
// same run (these machines are shared and noisy: ratios, medians and p99s, never one absolute time).
// Loopback only, bounded request counts. Needs Node 24 for the cold start and the Node 24 HTTP and node:sqlite
// rows (NODE24, or run under 24), root for the 256 MB rows, and PostgreSQL server binaries (or PG_ENDPOINT)
// for the PostgreSQL rows.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { cpus, totalmem, tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { unzipSync } from 'fflate'
import { closeDatabase, configFromEnv, database, hashPassword, listAnimals, migrate, openDatabase, type AnimalQuery, type Database, type DbConfig } from './db.ts'
import { SAMPLE_PASSWORD, seed, setUp } from './seed.ts'
import { startPostgres } from './test/postgres-server.ts'

process.env.JWT_KEY ??= 'bench-key-'.padEnd(64, 'x')
const { handler } = await import('./api.ts')
const work = mkdtempSync(join(tmpdir(), 'buddy-bench-'))
/** The memory the deployed function could run with: measured below, in a cgroup of this size. */
const FUNCTION_MB = 256
const node24 = process.env.NODE24 || (Number(process.versions.node.split('.')[0]) >= 24 ? process.execPath : undefined)
/** A sample user's login form. */
const LOGIN = new URLSearchParams({ username: 'juniper', password: SAMPLE_PASSWORD })
// The password hashing of new hashes, read from one: scrypt takes 128 × N × r bytes (RFC 7914).
const [, kdfN, kdfR, kdfP] = (await hashPassword('')).split('$').map(Number)
const KDF = { name: `scrypt N=2^${Math.log2(kdfN)}, r=${kdfR}, p=${kdfP}`, mib: (128 * kdfN * kdfR) / 2 ** 20 }
const rows: string[][] = []
const row = (...cells: (string | number)[]) => rows.push(cells.map(String))
const log = (text: string) => process.stderr.write(`${text}\n`)

// Measuring

const median = (xs: number[]) => quantile(xs, 0.5)
function quantile(xs: number[], q: number): number {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}
const ms = (x: number) => `${x < 1 ? x.toFixed(3) : x < 10 ? x.toFixed(2) : x.toFixed(1)} ms`
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`

/** Times `fn` `n` times after a warm-up; answers the durations in milliseconds. Each call has a turn of the
 * event loop to itself, as each invocation on Lambda has, and is timed to the turn's end: on SQLite, calls in
 * one turn share one read transaction, ended when the turn ends (db.ts). */
async function time(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const turn = async () => {
    await fn()
    await new Promise(setImmediate)
  }
  for (let i = 0; i < Math.min(20, n); i++) await turn()
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const started = performance.now()
    await turn()
    out.push(performance.now() - started)
  }
  return out
}

const event = (path: string, query = '', method = 'GET', body?: string, headers: Record<string, string> = {}) => ({
  version: '2.0',
  routeKey: '$default',
  rawPath: path,
  rawQueryString: query,
  headers,
  requestContext: { http: { method, path, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'bench' }, stage: '$default' },
  body,
  isBase64Encoded: false,
}) as unknown as Parameters<typeof handler>[0]

async function get(path: string, query = '') {
  const result = await handler(event(path, query))
  if (result.statusCode !== 200) throw new Error(`${path}?${query}: ${result.statusCode} ${result.body}`)
  return result
}

/** Points the API (its module-level database) at `config`. */
async function useDatabase(config: DbConfig) {
  await closeDatabase()
  if (config.kind === 'sqlite') Object.assign(process.env, { DB_LOCATION: 'local', DB_PATH: config.path })
  else Object.assign(process.env, { DB_LOCATION: 'rds', PG_DATABASE: config.database })
}

// A synthetic shelter of `animals` animals, with users, fosters and adoptions in the sample's
// proportions (16 animals : 8 users : 8 fosters : 7 adoptions), inserted in one transaction.
async function loadSynthetic(db: Database, animals: number): Promise<number> {
  let state = 42
  const random = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)]
  const day = (from: number, span: number) => new Date(Date.UTC(2000, 0, 1) + Math.floor(from + random() * span) * 86_400_000).toISOString().slice(0, 10)
  const users = animals / 2
  const hash = await hashPassword('password') // one hash for all: this is a load, not accounts
  const started = performance.now()
  await db.transaction(async (tx) => {
    const insert = async (table: string, columns: string[], values: unknown[][]) => {
      for (let i = 0; i < values.length; i += 500) {
        const chunk = values.slice(i, i + 500)
        const slots = chunk.map(() => `(${columns.map(() => '?').join(', ')})`).join(', ')
        await tx.all(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${slots}`, chunk.flat())
      }
    }
    await insert('users', ['username', 'email', 'password_hash', 'created_at'],
      Array.from({ length: users }, (_, i) => [`user${i}`, `user${i}@example.com`, hash, `${day(0, 9000)}T12:00:00`]))
    const names = ['nibbles', 'chompers', 'mr. spock', 'gladys', 'soupsoup', 'bagels', 'garbanzo', 'mothra', 'biscuit', 'pickles']
    await insert('animals', ['name', 'age', 'kind', 'fixed', 'vaccinated', 'intake_date', 'adopter_id', 'adoption_date'],
      Array.from({ length: animals }, (_, i) => {
        const adopted = random() < 7 / 16
        return [`${pick(names)} ${i}`, Math.floor(random() * 20), pick(['cat', 'dog', 'turtle', 'rabbit']), random() < 0.5,
          random() < 0.5, day(0, 9000), adopted ? 1 + Math.floor(random() * users) : null, adopted ? day(9000, 100) : null]
      }))
    await insert('fosters', ['animal_id', 'user_id', 'start_date', 'end_date'],
      Array.from({ length: animals / 2 }, () => [1 + Math.floor(random() * animals), 1 + Math.floor(random() * users), day(0, 9000), null]))
  })
  const total = animals + users + animals / 2
  return total / ((performance.now() - started) / 1000)
}

// 1. Package, and 4. cold start

async function packageAndColdStart() {
  log('package…')
  execFileSync(process.execPath, [join('node_modules', 'tsx', 'dist', 'cli.mjs'), 'deploy.ts', 'package'], { stdio: 'ignore' })
  const zip = statSync('build.zip').size
  const scripts = readdirSync('build').filter((f) => f.endsWith('.mjs'))
  const bundle = scripts.reduce((sum, f) => sum + statSync(join('build', f)).size, 0)
  const api = statSync('build/api.mjs').size
  row('Package', 'zip (api + seeder + sample data)', `${(zip / 1024).toFixed(1)} KB`, 'target 300 KB', ratio(zip, 300 * 1024))
  row('Package', `bundle, unzipped (${scripts.length} .mjs files)`, `${(bundle / 1024).toFixed(1)} KB`, `of which api.mjs ${(api / 1024).toFixed(1)} KB`, '')

  if (!node24) return row('Cold start', 'skipped: needs Node 24 (NODE24)', '', '', '')
  const task = join(work, 'task')
  mkdirSync(task)
  for (const [name, data] of Object.entries(unzipSync(readFileSync('build.zip')))) writeFileSync(join(task, name), data)
  log('cold start…')
  const first = JSON.stringify(event('/animals/1'))
  const probe = `const t0 = performance.now(); const { handler } = await import('./api.mjs'); const t1 = performance.now();
    const r = await handler(${first}); console.log(JSON.stringify({ load: t1 - t0, total: performance.now(), status: r.statusCode }))`
  const env = { PATH: process.env.PATH, AWS_LAMBDA_FUNCTION_NAME: 'bench', JWT_KEY: process.env.JWT_KEY!, DB_PATH: join(work, 'cold.db') }
  const run = (args: string[]) => {
    const started = performance.now()
    const out = execFileSync(node24, args, { cwd: task, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    return { wall: performance.now() - started, out }
  }
  const bare: number[] = []
  const cold: number[] = []
  const load: number[] = []
  // The API runs no migration (the seeder does, at deploy): each cold start meets a migrated, empty database.
  const template = join(work, 'cold-template.db')
  await migrated({ kind: 'sqlite', path: template, onNetworkFs: false })
  for (let i = 0; i < 15; i++) {
    bare.push(run(['-e', '0']).wall)
    copyFileSync(template, join(work, 'cold.db'))
    const { wall, out } = run(['--input-type=module', '-e', probe])
    const result = JSON.parse(out.trim().split('\n').at(-1)!)
    if (result.status !== 404) throw new Error(`cold start: expected 404 on an empty database, got ${result.status}`)
    cold.push(wall)
    load.push(result.load)
  }
  const overhead = median(cold) - median(bare)
  row('Cold start', 'first response to GET /animals/1, fresh node 24 process', ms(median(cold)), `node -e 0: ${ms(median(bare))}`,
    `+${ms(overhead)} (target +80 ms)`)
  row('Cold start', 'of which loading api.mjs', ms(median(load)), '', `${Math.round((100 * median(load)) / overhead)}% of the overhead`)
}

// 2. Handler overhead, in process

async function handlerOverhead(db: Database, path: string) {
  log('handler overhead…')
  // The baseline: the same row straight through the SQLite driver that db.ts uses, and JSON.stringify.
  const driver: any = await import('node:sqlite').then((m) => new m.DatabaseSync(path), async () => new (await import('better-sqlite3')).default(path))
  const statement = driver.prepare('SELECT id, name, age, kind, fixed, vaccinated, intake_date, adopter_id, adoption_date FROM animals WHERE id = ?')
  // 3,000 calls each, in alternating rounds of 100 after a warm-up of both (so that the JIT has settled):
  // a noisy moment of this shared machine weighs on both.
  const viaHandler: number[] = []
  const raw: number[] = []
  const viaHandlerOnce = () => handler(event('/animals/5'))
  const rawOnce = async () => JSON.stringify({ animal: statement.all(5)[0] })
  for (let i = 0; i < 2000; i++) {
    await viaHandlerOnce()
    await rawOnce()
  }
  for (let round = 0; round < 30; round++) {
    viaHandler.push(...(await time(100, viaHandlerOnce)))
    raw.push(...(await time(100, rawOnce)))
  }
  driver.close()
  row('Handler', `handler(GET /animals/5), in process, ${db.label.replace(/.*\(/, 'SQLite (')}`, ms(median(viaHandler)),
    `same row via the driver + JSON: ${ms(median(raw))}`,
    `${ratio(median(viaHandler), median(raw))} (target ≤ 2×)`)
}

// 3. Scale and 7. seeding

const PAGES = [
  ['sort=name', 'first page by name'],
  ['sort=age', 'first page by age'],
  ['sort=intake_date', 'first page by intake date'],
  ['sort=name&intake_after=2010-01-01&intake_before=2014-12-31', 'by name, intake 2010–2014'],
  ['sort=age&intake_after=2020-01-01', 'by age, intake after 2020'],
  ['sort=name&intake_after=2020-03-01&intake_before=2020-03-31', 'by name, intake in March 2020'],
  ['sort=intake_date&intake_after=2020-01-01', 'by intake date, intake after 2020'],
]

async function scale(kind: string, fresh: () => Promise<DbConfig>) {
  const p50: Record<string, number> = {}
  const pages: Record<string, number> = {}
  for (const n of [1000, 100_000]) {
    log(`${kind}: ${n} animals…`)
    const config = await fresh()
    const db = await openDatabase(config)
    const rate = await loadSynthetic(db, n)
    row('Seeding', `${kind}: synthetic load, ${n} animals`, `${Math.round(rate)} rows/s`, '', '')
    // PostgreSQL's autovacuum analyzes a table after a load like this one (here at once); nothing analyzes SQLite's.
    if (config.kind === 'postgres') await db.all('ANALYZE')
    await db.close()
    await useDatabase(config)
    for (const [query, label] of [...PAGES, [`sort=age&offset=${n / 2}`, `by age, offset ${n / 2}`]]) {
      const times = await time(n > 10_000 ? 100 : 300, () => get('/animals', query))
      const page = JSON.parse((await get('/animals', query)).body).animals.length
      const key = label.replace(/\d+$/, '')
      if (n === 1000) [p50[key], pages[key]] = [median(times), page]
      else {
        // The target compares the same page at both sizes: a page deep into the list, or of a window that holds
        // a few animals among 1,000, is not the same page among 100,000.
        const note = label.startsWith('by age, offset') ? '' : page !== pages[key] ? ` (pages of ${pages[key]} and ${page})` : ' (target ≤ 2×)'
        row('Scale', `${kind}: ${label}`, `p50 ${ms(median(times))}, p99 ${ms(quantile(times, 0.99))}`,
          `1,000 animals: p50 ${ms(p50[key])}`, `${ratio(median(times), p50[key])}${note}`)
      }
    }
    if (n === 100_000) await queryPlan(kind)
  }
}

/** The plan of each page query that GET /animals sends for a filtered page, as the API sends it: its text and
 * parameters recorded on their way to the database. */
const plans: string[] = []
async function queryPlan(kind: string) {
  const db = await database()
  for (const [query] of PAGES.filter(([query]) => /intake_(after|before)/.test(query))) {
    let sent: [string, unknown[]] = ['', []]
    const recording: Database = { ...db, values: (sql, params = []) => ((sent = [sql, params]), db.values(sql, params)) }
    const q = Object.fromEntries(new URLSearchParams(query))
    await listAnimals(recording, { sort: q.sort as AnimalQuery['sort'], intake_after: q.intake_after, intake_before: q.intake_before, limit: 100, offset: 0 })
    const [sql, params] = sent
    const explain = db.kind === 'sqlite' ? `EXPLAIN QUERY PLAN ${sql}` : `EXPLAIN ${sql}`
    const lines = (await db.all<Record<string, unknown>>(explain, params)).map((r) => String(r.detail ?? r['QUERY PLAN']))
    plans.push(`${kind}, GET /animals?${query}: ${sql.replace(/^SELECT .+? FROM/, 'SELECT … FROM')}\n  ${lines.join('\n  ')}`)
  }
}

async function sampleSeeding(kind: string, fresh: () => Promise<DbConfig>) {
  const db = await openDatabase(await fresh())
  const started = performance.now()
  const result = await seed(db)
  const seconds = (performance.now() - started) / 1000
  const n = result.user_count + result.animal_count + result.foster_count + result.adoption_count
  row('Seeding', `${kind}: the sample (${n} rows, ${result.user_count} password hashes)`, `${Math.round(n / seconds)} rows/s`,
    `${(seconds * 1000).toFixed(0)} ms in all`, '')
  await db.close()
}

// 8. Login

async function login() {
  log('login…')
  const body = LOGIN.toString()
  const headers = { 'content-type': 'application/x-www-form-urlencoded' }
  const logins = await time(20, async () => {
    const r = await handler(event('/auth/token', '', 'POST', body, headers))
    if (r.statusCode !== 200) throw new Error(`login: ${r.statusCode}`)
  })
  const reads = await time(200, () => get('/users/1'))
  row('Login', `POST /auth/token (${KDF.name})`, `p50 ${ms(median(logins))}`, `GET /users/1: ${ms(median(reads))}`,
    ratio(median(logins), median(reads)))
}

// 1. HTTP throughput and 6. memory: the bundle under plain node, against a bare node:http server.

/** Starts `node args…` with its output in a file (a pipe read by this process would take CPU from the load
 * generator), and answers the URL it says it listens on. With `cgroup`, the process runs in that memory cgroup. */
async function listen(args: string[], env: NodeJS.ProcessEnv, node = process.execPath, cgroup?: MemoryCgroup): Promise<{ child: ChildProcess; url: string }> {
  const out = join(work, `server-${Date.now()}.log`)
  const fd = openSync(out, 'w')
  // In a cgroup: a shell moves itself in, then becomes node, so node starts inside it.
  const [command, argv] = cgroup ? ['sh', ['-c', 'echo $$ > "$0" && exec "$@"', cgroup.procs, node, ...args]] : [node, args]
  const child = spawn(command, argv, { env, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  for (const deadline = Date.now() + 20_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    const m = readFileSync(out, 'utf8').match(/on (http:\/\/[\d.:]+)/)
    if (m) return { child, url: m[1] }
    if (child.exitCode !== null) break
  }
  child.kill()
  throw new Error(`${args.join(' ')} did not start: ${readFileSync(out, 'utf8')}`)
}

/** A memory cgroup under this process's own, limited to `bytes`: a server in it has the memory a Lambda function of
 * that size has (with no swap, as here and on Lambda). Making one takes root and a writable cgroup file system (v1's
 * memory controller, or v2 with it enabled); where that fails, the reason. */
interface MemoryCgroup {
  procs: string
  remove(): void
}
function memoryCgroup(bytes: number): MemoryCgroup | string {
  const own = readFileSync('/proc/self/cgroup', 'utf8').split('\n').map((line) => line.split(':'))
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((line) => {
    const [mount, fs = ''] = line.split(' - ')
    const [type, , options = ''] = fs.split(' ')
    return { point: mount.split(' ')[4], type, options: options.split(',') }
  })
  const v1 = own.find(([, controllers]) => controllers?.split(',').includes('memory'))?.[2]
  const v1Mount = mounts.find((m) => m.type === 'cgroup' && m.options.includes('memory'))?.point
  const v2 = own.find(([id, controllers]) => id === '0' && controllers === '')?.[2]
  const v2Mount = mounts.find((m) => m.type === 'cgroup2')?.point
  const tries = [
    ...(v1 !== undefined && v1Mount ? [{ parent: join(v1Mount, v1), limit: 'memory.limit_in_bytes' }] : []),
    ...(v2 !== undefined && v2Mount ? [{ parent: join(v2Mount, v2), limit: 'memory.max' }] : []),
  ]
  const failures: string[] = []
  for (const { parent, limit } of tries) {
    const dir = join(parent, `buddy-bench-${process.pid}`)
    try {
      mkdirSync(dir)
      try {
        // A v2 cgroup without the memory controller enabled below its parent has no memory.max.
        if (!existsSync(join(dir, limit))) throw new Error(`${limit} is missing: the memory controller is not enabled there`)
        writeFileSync(join(dir, limit), String(bytes))
      } catch (error) {
        rmdirSync(dir)
        throw error
      }
      return { procs: join(dir, 'cgroup.procs'), remove: () => rmdirSync(dir) }
    } catch (error) {
      failures.push(`${parent}: ${(error as Error).message}`)
    }
  }
  return `no memory cgroup could be made (it takes root): ${failures.join('; ') || 'no cgroup file system'}`
}

/** The V8 heap sizes Lambda's Node.js runtime starts a function of `mb` MB with, unless NODE_OPTIONS sets its own:
 * its bootstrap passes --max-semi-space-size and --max-old-space-size, worked out from AWS_LAMBDA_FUNCTION_MEMORY_SIZE
 * (https://gist.github.com/davidjb/432ea4e1c89f399ec412270539fe126f, the nodejs20.x bootstrap), as 5% and 90% of it
 * (lambci's copy of that runtime: https://github.com/lambci/node-custom-lambda/blob/master/v14.x/bootstrap.c).
 * Without them, Node 24 in a 256 MB cgroup holds V8's new space to 1 MB; with them it grew to 16 MB under load here
 * (--trace-gc-nvp's new_space_capacity). */
const lambdaHeap = (mb: number) => ({ semi: Math.floor((mb * 5) / 100), old: Math.floor((mb * 90) / 100) })

/** Requests a second, and the median and 99th percentile response times in ms. */
interface Load {
  rps: number
  p50: number
  p99: number
}
/** autocannon on `url`, 10 connections for `seconds`. Its own percentiles are whole milliseconds (0 or 1 for all of
 * these), so the response times its 'response' event reports, in fractions of one, are kept here. Any answer but a
 * 2xx fails the run. */
function load(url: string, seconds = 3): Promise<Load> {
  const times: number[] = []
  return new Promise((resolve, reject) => {
    autocannon({ url, connections: 10, duration: seconds }, (error, result) => {
      if (error) return reject(error)
      if (result.non2xx || result.errors) return reject(new Error(`${url}: ${result.non2xx} answers not 2xx, ${result.errors} errors`))
      resolve({ rps: result.requests.average, p50: quantile(times, 0.5), p99: quantile(times, 0.99) })
    }).on('response', (_client, _status, _bytes, ms) => times.push(ms))
  })
}

async function throughput(dbPath: string) {
  log('HTTP throughput…')
  const env = { ...process.env, DB_LOCATION: 'local', DB_PATH: dbPath, PORT: '0', HOST: '127.0.0.1' }
  const paths = ['/animals/5', '/animals?sort=age&limit=100', '/greet']
  // Node 24 first: it is what Lambda runs, with node:sqlite; then Node 24 as a 256 MB function runs
  // (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html): in that much memory, and with the heap
  // sizes Lambda's runtime gives V8 for it (lambdaHeap, above). Then this Node (20: better-sqlite3).
  const runs: { node: string; cgroup?: MemoryCgroup }[] = []
  if (node24) {
    runs.push({ node: node24 })
    const cgroup = memoryCgroup(FUNCTION_MB * 2 ** 20)
    if (typeof cgroup === 'string') row('HTTP', `node 24 in ${FUNCTION_MB} MB: not measured`, cgroup, '', '')
    else runs.push({ node: node24, cgroup })
  }
  if (process.execPath !== node24) runs.push({ node: process.execPath })
  const heap = lambdaHeap(FUNCTION_MB)
  const functionFlags = [`--max-semi-space-size=${heap.semi}`, `--max-old-space-size=${heap.old}`]
  for (const { node, cgroup } of runs) {
    const version = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim()
    const where = `node ${version}${cgroup ? ` in ${FUNCTION_MB} MB, V8 semi/old space ${heap.semi}/${heap.old} MB` : ''}`
    const { child: api, url: apiUrl } = await listen([...(cgroup ? functionFlags : []), 'build/api.mjs'], env, node, cgroup)
    const bodies = await Promise.all(paths.map((p) => fetch(apiUrl + p).then((r) => r.text())))
    // The bare server runs on the same Node, and answers each path with the bytes the API sent.
    const bareCode = `
      const bodies = ${JSON.stringify(Object.fromEntries(paths.map((p, i) => [p, bodies[i]])))}
      require('node:http').createServer((req, res) => {
        const body = bodies[req.url]
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) }); res.end(body)
      }).listen(0, '127.0.0.1', function () { console.log('on http://127.0.0.1:' + this.address().port) })`
    const { child: bare, url: bareUrl } = await listen(['-e', bareCode], process.env, node)
    try {
      for (const path of paths) {
        await load(apiUrl + path, 2) // warm-up
        // Three alternating rounds; each side's median round: a noisy moment weighs on both.
        const rounds: [Load[], Load[]] = [[], []]
        for (let round = 0; round < 3; round++) rounds[0].push(await load(apiUrl + path)), rounds[1].push(await load(bareUrl + path))
        const [a, b] = rounds.map((results) => results.sort((x, y) => x.rps - y.rps)[1])
        const what = path === '/greet' ? 'GET /greet (no database)' : `GET ${path}`
        const latency = ({ p50, p99 }: Load) => `${Math.round(p50 * 1000)}/${Math.round(p99 * 1000)} µs`
        row('HTTP', `${what}, ${where}: req/s, p50/p99`, `${Math.round(a.rps)}/s, ${latency(a)}`,
          `bare node:http: ${Math.round(b.rps)}/s, ${latency(b)}`, `${ratio(a.rps, b.rps)}${path === '/animals/5' ? ' (target ≥ 0.6)' : ''}`)
      }
      const peak = (pid?: number) => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmHWM:\s+(\d+)/)![1]) / 1024
      row('Memory', `peak RSS of the local server through these runs, ${where}`, `${peak(api.pid).toFixed(0)} MB`,
        `bare server: ${peak(bare.pid).toFixed(0)} MB`, 'target < 120 MB')
      if (cgroup) {
        // A function answers one request at a time, and a login is its largest: scrypt's memory comes on top.
        const response = await fetch(`${apiUrl}/auth/token`, { method: 'POST', body: LOGIN })
        const answered = response.ok ? `${peak(api.pid).toFixed(0)} MB` : `failed: ${response.status} ${await response.text()}`
        row('Memory', `peak RSS after one login too (scrypt: ${KDF.mib} MiB), ${where}`, answered, `limit: ${FUNCTION_MB} MB`, '')
      }
    } catch (error) {
      // The kernel kills a server that outgrows its cgroup: say so in the table rather than lose the other rows.
      if (!cgroup || (api.exitCode === null && api.signalCode === null)) throw error
      row('Memory', `local server, ${where}`, `stopped (${api.signalCode ?? api.exitCode}): out of memory?`, `limit: ${FUNCTION_MB} MB`, '')
    } finally {
      api.kill()
      bare.kill()
      if (cgroup) {
        if (api.exitCode === null && api.signalCode === null) await once(api, 'exit')
        cgroup.remove()
      }
    }
  }
}

// Run

// `npm run bench -- http scale` runs only those sections; all by default.
const SECTIONS = ['package', 'handler', 'login', 'http', 'sqlite', 'postgres']
const only = process.argv.slice(2)
const unknown = only.filter((x) => !SECTIONS.includes(x))
if (unknown.length) throw new Error(`unknown section ${unknown.join(', ')}: choose from ${SECTIONS.join(', ')}`)
const wanted = (section: string) => !only.length || only.includes(section)

let n = 0
/** A new database with the schema and no rows. */
async function migrated(config: DbConfig): Promise<DbConfig> {
  const db = await openDatabase(config)
  await migrate(db)
  await db.close()
  return config
}
const sqliteFresh = () => migrated({ kind: 'sqlite', path: join(work, `db-${++n}.db`), onNetworkFs: false })
try {
  if (wanted('package') || wanted('http')) await packageAndColdStart()

  const samplePath = join(work, 'sample.db')
  const sample = await openDatabase({ kind: 'sqlite', path: samplePath, onNetworkFs: false })
  await setUp(sample)
  await sample.close()
  await useDatabase({ kind: 'sqlite', path: samplePath, onNetworkFs: false })
  if (wanted('handler')) await handlerOverhead(await database(), samplePath)
  if (wanted('login')) await login()
  await closeDatabase()
  if (wanted('http')) await throughput(samplePath)

  if (wanted('sqlite')) {
    const probe = await openDatabase(await sqliteFresh())
    const kind = `SQLite (${probe.label.match(/\(([^)]+)\)$/)![1]})`
    await probe.close()
    await sampleSeeding(kind, sqliteFresh)
    await scale(kind, sqliteFresh)
    // On Lambda, SQLite is Node 24's node:sqlite, built without STAT4, which plans differently: this section again
    // under Node 24, in a child running this script, which answers its rows as JSON.
    if (node24 && node24 !== process.execPath) {
      log('SQLite on Node 24…')
      const out = execFileSync(node24, [join('node_modules', 'tsx', 'dist', 'cli.mjs'), 'bench.ts', 'sqlite'],
        { env: { ...process.env, BENCH_JSON: '1' }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      const child = JSON.parse(out.trim().split('\n').at(-1)!) as { rows: string[][]; plans: string[] }
      rows.push(...child.rows.filter(([area]) => area === 'Seeding' || area === 'Scale'))
      plans.push(...child.plans)
    }
  }

  const server = wanted('postgres') ? await startPostgres() : 'not asked for'
  if (typeof server === 'string') row('PostgreSQL', `skipped: ${server}`, '', '', '')
  else {
    try {
      Object.assign(process.env, server.env, { DB_LOCATION: 'rds', PG_DATABASE: 'postgres' })
      const admin = await openDatabase(configFromEnv())
      const pgFresh = async (): Promise<DbConfig> => {
        const name = `bench_${++n}`
        await admin.all(`DROP DATABASE IF EXISTS ${name}`)
        await admin.all(`CREATE DATABASE ${name}`)
        return migrated({ ...(configFromEnv() as Extract<DbConfig, { kind: 'postgres' }>), database: name })
      }
      await sampleSeeding('PostgreSQL', pgFresh)
      await scale('PostgreSQL', pgFresh)
      await closeDatabase()
      await admin.close()
    } finally {
      server.stop()
    }
  }
} finally {
  await closeDatabase()
  rmSync(work, { recursive: true, force: true })
}

if (process.env.BENCH_JSON) {
  console.log(JSON.stringify({ rows, plans }))
  process.exit(0)
}
const header = ['area', 'what', 'measured', 'baseline (same run)', 'ratio / target']
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`
console.log(line(header))
console.log(line(widths.map((w) => '-'.repeat(w))))
for (const r of rows) console.log(line(r))
console.log(`\nQuery plans at 100,000 animals:\n${plans.join('\n')}`)
console.log(`\n${cpus().length} cores (${cpus()[0]?.model}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB; node ${process.version}` +
  `${node24 ? `, cold start on ${execFileSync(node24, ['--version'], { encoding: 'utf8' }).trim()}` : ''}`)
