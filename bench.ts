// npm run bench: what a user of a Lambda deployment pays for, each figure beside a baseline measured in the
// same run (these machines are shared and noisy: ratios and medians, never one absolute time). Loopback only,
// bounded request counts. Needs Node 24 for the cold starts and the 256 MB run (NODE24, or run under 24),
// PostgreSQL server binaries (or PG_ENDPOINT) for the PostgreSQL rows, and moto_server for the deploy rows.
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import {
  copyFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { deflateRawSync } from 'node:zlib'
import { createServer, connect, type Socket } from 'node:net'
import { cpus, totalmem, tmpdir } from 'node:os'
import { join } from 'node:path'
import { unzipSync } from 'fflate'
import { closeDatabase, configFromEnv, migrate, openDatabase, type Database, type DbConfig } from './db.ts'
import { commonPasswordList, loadCommonPasswords, SAMPLE_PASSWORD, setUp } from './seed.ts'
import { startPostgres, type PostgresServer } from './test/postgres-server.ts'
import { startMoto, startProxy } from './test/moto.ts'

process.env.JWT_KEY ??= '0123456789abcdef'.repeat(4)
const { handler } = await import('./api.ts')
const work = mkdtempSync(join(tmpdir(), 'buddy-bench-'))
const node24 = process.env.NODE24 || (Number(process.versions.node.split('.')[0]) >= 24 ? process.execPath : undefined)
const REGION = 'us-east-1'
const rows: string[][] = []
const row = (...cells: (string | number)[]) => rows.push(cells.map(String))
const log = (text: string) => process.stderr.write(`${text}\n`)

// Measuring

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const ms = (x: number) => `${x < 1 ? x.toFixed(3) : x < 10 ? x.toFixed(2) : x.toFixed(1)} ms`
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`

/** Times `fn` `n` times after a warm-up; answers the durations in milliseconds. */
async function time(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < Math.min(20, n); i++) await fn()
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const started = performance.now()
    await fn()
    out.push(performance.now() - started)
  }
  return out
}

const event = (path: string, query = '', method = 'GET', body?: string, headers: Record<string, string> = {}) =>
  ({
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: query,
    headers,
    requestContext: {
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'bench' },
      stage: '$default',
    },
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

/** A new database with the schema and no rows. */
async function migrated(config: DbConfig): Promise<DbConfig> {
  const db = await openDatabase(config)
  await migrate(db)
  await db.close()
  return config
}

// A synthetic shelter of `animals` animals, with users and fosters in the sample's proportions
// (16 animals : 8 users : 8 fosters, 7 of 16 adopted), inserted in one transaction.
async function loadSynthetic(db: Database, animals: number) {
  let state = 42
  const random = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)]
  const day = (from: number, span: number) =>
    new Date(Date.UTC(2000, 0, 1) + Math.floor(from + random() * span) * 86_400_000).toISOString().slice(0, 10)
  const users = animals / 2
  const hash = 'scrypt$65536$8$2$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' // a load, not accounts
  await db.transaction(async (tx) => {
    const insert = async (table: string, columns: string[], count: number, make: (i: number) => unknown[]) => {
      for (let i = 0; i < count; i += 500) {
        const chunk = Array.from({ length: Math.min(500, count - i) }, (_, j) => make(i + j))
        const slots = chunk.map(() => `(${columns.map(() => '?').join(', ')})`).join(', ')
        await tx.all(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${slots}`, chunk.flat())
      }
    }
    await insert(
      'users',
      ['username', 'username_key', 'email', 'email_key', 'password_hash', 'created_at'],
      users,
      (i) => [`user${i}`, `user${i}`, `user${i}@example.com`, `user${i}@example.com`, hash, `${day(0, 9000)}T12:00:00`],
    )
    const names = [
      'nibbles',
      'chompers',
      'mr. spock',
      'gladys',
      'soupsoup',
      'bagels',
      'garbanzo',
      'mothra',
      'biscuit',
      'pickles',
    ]
    await insert(
      'animals',
      ['name', 'age', 'kind', 'fixed', 'vaccinated', 'intake_date', 'adopter_id', 'adoption_date'],
      animals,
      (i) => {
        const adopted = random() < 7 / 16
        return [
          `${pick(names)} ${i}`,
          Math.floor(random() * 20),
          pick(['cat', 'dog', 'turtle', 'rabbit']),
          random() < 0.5,
          random() < 0.5,
          day(0, 9000),
          adopted ? 1 + Math.floor(random() * users) : null,
          adopted ? day(9000, 100) : null,
        ]
      },
    )
    await insert('fosters', ['animal_id', 'user_id', 'start_date', 'end_date'], animals / 2, () => [
      1 + Math.floor(random() * animals),
      1 + Math.floor(random() * users),
      day(0, 9000),
      null,
    ])
  })
}

// 5. Package: as a deploy to one region builds it, with that region's RDS certificate authorities.

function packageCode(): string {
  log('package…')
  execFileSync(
    process.execPath,
    [join('node_modules', 'tsx', 'dist', 'cli.mjs'), 'deploy.ts', 'package', '--region', REGION],
    { stdio: 'ignore' },
  )
  const zip = statSync('build.zip').size
  row(
    'Package',
    `build.zip for ${REGION}: both functions, the sample, the region's RDS CAs`,
    `${(zip / 1024).toFixed(1)} KB`,
    '',
    'target ≤ 80 KB',
  )
  const task = join(work, 'task')
  mkdirSync(task)
  for (const [name, data] of Object.entries(unzipSync(readFileSync('build.zip')))) writeFileSync(join(task, name), data)
  return task
}

// 1. and 2. Cold starts: a fresh Node 24 on the unzipped package answering its first event.

/** Wall time of `node24 args` in `cwd`, and its last line of output. Not execFileSync: the delay proxy for
 * PostgreSQL runs in this process. */
async function runNode(args: string[], cwd: string, env: NodeJS.ProcessEnv) {
  const started = performance.now()
  const { stdout } = await promisify(execFile)(node24!, args, {
    cwd,
    env: { PATH: process.env.PATH, ...env },
    encoding: 'utf8',
  })
  return { wall: performance.now() - started, last: stdout.trim().split('\n').at(-1) ?? '' }
}

/** The child's own peak RSS in MB, as code for it to run: VmHWM, not process.resourceUsage().maxRSS, which a child
 * takes over from this process at the fork (execve keeps getrusage's counts): a child of a 200 MB process said 195 MB
 * there and 42 MB here. */
const peakRss = `Number(process.getBuiltinModule('node:fs').readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\\s+(\\d+)/)[1]) / 1024`

const firstEvent = (path: string) =>
  `const { handler } = await import('./api.mjs'); const r = await handler(${JSON.stringify(event(path))}); console.log(r.statusCode); process.exit(0)`

/** console as Lambda's Node.js runtime makes it: each call one JSON line written with fs.writeSync to the platform's
 * file descriptor, never through process.stdout, whose stream a plain `node` sets up on the first console.log (~3 ms
 * here) (aws-lambda-nodejs-runtime-interface-client, src/logging/telemetry-logger.ts). Loaded by `node -e 0` too. */
const lambdaConsole = `data:text/javascript,${encodeURIComponent(
  `const { writeSync } = process.getBuiltinModule('node:fs') // not import: its ESM facade reads every export
  for (const [method, level] of [['log', 'INFO'], ['info', 'INFO'], ['warn', 'WARN'], ['error', 'ERROR']])
    console[method] = (message) => writeSync(1, JSON.stringify({ timestamp: new Date().toISOString(), level, message }) + '\\n')`,
)}`

/** Medians of `runs` cold starts against as many `node -e 0`, alternated. */
async function coldStarts(
  task: string,
  env: NodeJS.ProcessEnv,
  path: string,
  runs: number,
  before?: () => void,
  nodeArgs: string[] = [],
) {
  nodeArgs = ['--import', lambdaConsole, ...nodeArgs]
  const bare: number[] = []
  const cold: number[] = []
  for (let i = 0; i < runs; i++) {
    bare.push((await runNode([...nodeArgs, '-e', '0'], task, {})).wall)
    before?.()
    const { wall, last } = await runNode([...nodeArgs, '--input-type=module', '-e', firstEvent(path)], task, {
      AWS_LAMBDA_FUNCTION_NAME: 'bench',
      JWT_KEY: process.env.JWT_KEY,
      ...env,
    })
    if (!last.includes('"message":404}'))
      throw new Error(`cold start: expected 404 from ${path} on an empty database, got ${last}`)
    cold.push(wall)
  }
  return { bare: median(bare), cold: median(cold) }
}

async function sqliteColdStart(task: string) {
  log('cold start, SQLite…')
  const template = join(work, 'cold-template.db')
  await migrated({ kind: 'sqlite', path: template, onNetworkFs: false })
  const { bare, cold } = await coldStarts(task, { DB_PATH: join(work, 'cold.db') }, '/animals/1', 21, () =>
    copyFileSync(template, join(work, 'cold.db')),
  )
  row(
    'Cold start',
    'SQLite: first answer to GET /animals/1 (median of 21)',
    ms(cold),
    `node -e 0: ${ms(bare)}`,
    `+${ms(cold - bare)} (target ≤ +15 ms)`,
  )
}

/** A TCP proxy that delays each chunk `delay` ms each way (and the connection's handshake one round trip), as
 * inside an AWS region, and counts round trips: a client flight answered by the server. */
async function delayProxy(port: number, delay: number) {
  const flights: string[][] = []
  const server = createServer((client) => {
    const held: Buffer[] = []
    let upstream: Socket | undefined
    let last: 'client' | 'server' | undefined
    const later = (fn: () => void) => setTimeout(fn, delay)
    client.on('data', (chunk) => {
      if (last !== 'client') flights.push([])
      flights.at(-1)!.push(chunk.toString('latin1'))
      last = 'client'
      later(() => (upstream ? upstream.write(chunk) : held.push(chunk)))
    })
    setTimeout(() => {
      // the TCP handshake: one round trip before the first byte goes through
      upstream = connect(port, '127.0.0.1', () => held.splice(0).forEach((chunk) => upstream!.write(chunk)))
      upstream.on('data', (chunk) => {
        last = 'server'
        later(() => client.write(chunk))
      })
      upstream.on('close', () => later(() => client.destroy()))
      upstream.on('error', () => client.destroy())
    }, 2 * delay)
    client.on('close', () => upstream?.destroy())
    client.on('error', () => upstream?.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as { port: number }).port, flights, close: () => server.close() }
}

/** What each round trip of a cold start on PostgreSQL is for, in the order the protocol has them (after TLS
 * the bytes are encrypted: the order, not the bytes, says which is which). */
function nameFlights(flights: string[][], queries: string[]): string[] {
  const first = flights[0]?.join('') ?? ''
  const sslRequest = first.length === 8 && first.charCodeAt(4) === 0x04 && first.charCodeAt(5) === 0xd2
  const tls = flights[1]?.[0]?.charCodeAt(0) === 0x16
  if (!sslRequest || !tls) throw new Error('the cold start did not begin with SSLRequest and a TLS ClientHello')
  const expected = [
    'TCP handshake',
    'SSLRequest → S (the server takes TLS)',
    'TLS 1.3 handshake: ClientHello → ServerHello … Finished',
    'client Finished, StartupMessage → AuthenticationSASL (SCRAM-SHA-256)',
    'SASLInitialResponse → SASLContinue',
    'SASLResponse → SASLFinal, AuthenticationOk, ReadyForQuery',
    ...queries,
  ]
  return ['TCP handshake', ...flights.map((_, i) => expected[i + 1] ?? `not expected: flight ${i + 1}`)]
}

async function postgresColdStart(task: string, server: PostgresServer) {
  log('cold start, PostgreSQL…')
  const database = 'bench_cold'
  const admin = await openDatabase({
    ...(configFromEnv({ ...server.env, DB_LOCATION: 'rds', PG_DATABASE: 'postgres' }) as Extract<
      DbConfig,
      { kind: 'postgres' }
    >),
  })
  await admin.all(`DROP DATABASE IF EXISTS ${database}`)
  await admin.all(`CREATE DATABASE ${database}`)
  await admin.close()
  await migrated(configFromEnv({ ...server.env, DB_LOCATION: 'rds', PG_DATABASE: database }))
  const delay = 1
  const proxy = await delayProxy(Number(server.env.PG_PORT), delay)
  const env = { ...server.env, DB_LOCATION: 'rds', PG_DATABASE: database, PG_PORT: String(proxy.port) }
  try {
    const once = await coldStarts(task, env, '/animals/1', 1)
    const flights = proxy.flights.length
    const names = nameFlights(proxy.flights, [
      'the schema check: SELECT MAX(version) FROM schema_migrations',
      'the request, 1: Parse, Describe (postgres.js learns the parameter types)',
      'the request, 2: Bind, Execute → the row',
    ])
    proxy.flights.length = 0
    const { bare, cold } = await coldStarts(task, env, '/animals/1', 11)
    row(
      'Cold start',
      `PostgreSQL over TLS, ${delay} ms each way: first answer to GET /animals/1 (median of 11)`,
      ms(cold),
      `node -e 0: ${ms(bare)}`,
      `+${ms(cold - bare)}; first run +${ms(once.cold - once.bare)}`,
    )
    row(
      'Cold start',
      'PostgreSQL: round trips to the database before the first answer',
      `${names.length}`,
      `${flights} client flights + the TCP handshake`,
      'target ≤ 8',
    )
    names.forEach((name, i) => row('Cold start', `  round trip ${i + 1}`, name, '', ''))
    await iamColdStart(task, server, env, proxy)
  } finally {
    proxy.close()
  }
}

/** The path a deployment takes: PG_AUTH=iam, the token signed in the process from the credentials in its environment
 * and sent as a cleartext password over TLS, as RDS takes it from a member of rds_iam (postgres-server.ts). The
 * server cannot check a token: the role's password is the one the reference signer (@aws-sdk/rds-signer) gives for
 * these credentials at a fixed moment, which both paths' processes are held at (a Date frozen by --import). */
async function iamColdStart(
  task: string,
  server: PostgresServer,
  env: NodeJS.ProcessEnv,
  proxy: Awaited<ReturnType<typeof delayProxy>>,
) {
  log('cold start, PostgreSQL with IAM…')
  const moment = Date.parse('2026-12-01T12:00:00Z')
  const credentials = {
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'bench-secret',
    AWS_SESSION_TOKEN: 'IQoJb3JpZ2luX2Vj+/=',
  }
  const role = 'bench_iam'
  const { Signer } = await import('@aws-sdk/rds-signer')
  const RealDate = Date
  globalThis.Date = class extends RealDate {
    constructor(...args: ConstructorParameters<typeof Date>) {
      super(...((args.length ? args : [moment]) as [number]))
    }
    static now = () => moment
  } as DateConstructor
  const token = await new Signer({
    hostname: '127.0.0.1',
    port: proxy.port,
    username: role,
    region: REGION,
    credentials: {
      accessKeyId: credentials.AWS_ACCESS_KEY_ID,
      secretAccessKey: credentials.AWS_SECRET_ACCESS_KEY,
      sessionToken: credentials.AWS_SESSION_TOKEN,
    },
  })
    .getAuthToken()
    .finally(() => (globalThis.Date = RealDate))
  const admin = await openDatabase(configFromEnv({ ...env, PG_PORT: server.env.PG_PORT }))
  await admin.exec(`
    DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN CREATE ROLE rds_iam; END IF; END $$;
    DROP ROLE IF EXISTS ${role};
    CREATE ROLE ${role} LOGIN PASSWORD '${token}' IN ROLE rds_iam;
    GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role};`)
  await admin.close()
  const frozen = `data:text/javascript,${encodeURIComponent(
    `const D = Date; globalThis.Date = class extends D { constructor(...a) { super(...(a.length ? a : [${moment}])) } static now() { return ${moment} } }`,
  )}`
  const iamEnv = { ...env, PG_AUTH: 'iam', PG_USERNAME: role, PG_PASSWORD: '', AWS_REGION: REGION, ...credentials }
  proxy.flights.length = 0
  await coldStarts(task, iamEnv, '/animals/1', 1, undefined, ['--import', frozen])
  const flights = proxy.flights.length
  const passwords: number[] = []
  const tokens: number[] = []
  for (let i = 0; i < 11; i++) {
    passwords.push((await coldStarts(task, env, '/animals/1', 1, undefined, ['--import', frozen])).cold)
    tokens.push((await coldStarts(task, iamEnv, '/animals/1', 1, undefined, ['--import', frozen])).cold)
  }
  row(
    'Cold start',
    'PostgreSQL with IAM: the same, a token as password (cleartext over TLS), 11 alternated with the password path',
    ms(median(tokens)),
    `a password (SCRAM): ${ms(median(passwords))}`,
    `${median(tokens) >= median(passwords) ? '+' : ''}${ms(median(tokens) - median(passwords))}, target ≤ +5 ms`,
  )
  row(
    'Cold start',
    'PostgreSQL with IAM: round trips before the first answer',
    `${flights + 1}`,
    `${flights} client flights + the TCP handshake`,
    'target ≤ 6',
  )
}

// 3. Warm requests: handler(event) in process, against the same rows through the driver.

async function warm(path: string) {
  log('warm requests…')
  const driver: any = await import('node:sqlite').then(
    (m) => new m.DatabaseSync(path),
    async () => new (await import('better-sqlite3')).default(path),
  )
  const columns = 'id, name, age, kind, fixed, vaccinated, intake_date, adopter_id, adoption_date'
  const one = driver.prepare(`SELECT ${columns} FROM animals WHERE id = ?`)
  const page = driver.prepare(`SELECT ${columns} FROM animals ORDER BY age, id LIMIT 100`)
  const cases = [
    ['GET /animals/5', () => get('/animals/5'), async () => JSON.stringify({ animal: one.all(5)[0] })],
    [
      'GET /animals?sort=age (16 animals)',
      () => get('/animals', 'sort=age'),
      async () => JSON.stringify({ animals: page.all() }),
    ],
  ] as const
  for (const [what, viaHandler, viaDriver] of cases) {
    // Alternating rounds of 100 after a warm-up of both: a noisy moment of this shared machine weighs on both.
    const a: number[] = []
    const b: number[] = []
    for (let i = 0; i < 1000; i++) (await viaHandler(), await viaDriver())
    for (let round = 0; round < 30; round++) {
      a.push(...(await time(100, viaHandler)))
      b.push(...(await time(100, viaDriver)))
    }
    row(
      'Warm',
      `${what}: handler(event), SQLite`,
      ms(median(a)),
      `the rows via the driver + JSON: ${ms(median(b))}`,
      `${ratio(median(a), median(b))} (target ≤ 2×)`,
    )
  }
  driver.close()
}

// 4. Scale: GET /animals pages at 1,000, 100,000 and 1,000,000 animals.

const FIRST_PAGES = [
  ['sort=name', 'by name'],
  ['sort=age', 'by age'],
  ['sort=intake_date', 'by intake date'],
]
const SIZES = [1000, 100_000, 1_000_000]

async function scale(kind: string, fresh: () => Promise<DbConfig>) {
  const first: Record<string, number[]> = {}
  const deep: number[] = []
  for (const n of SIZES) {
    log(`${kind}: ${n} animals…`)
    const config = await fresh()
    const db = await openDatabase(config)
    await loadSynthetic(db, n)
    // A shelter's animals come in over years, and autovacuum keeps the per-day counts table compact meanwhile; this
    // load, in one transaction, rewrites each day's row ~100 times at 1M animals, and plain VACUUM would leave the
    // table that many times its size for SUM(n) to read (8–12 ms a page here). So FULL there; ANALYZE, as autovacuum does.
    if (config.kind === 'postgres') (await db.all('VACUUM FULL animal_intake_counts'), await db.all('ANALYZE'))
    await db.close()
    await useDatabase(config)
    for (const [query, label] of FIRST_PAGES)
      (first[label] ??= []).push(median(await time(n > 10_000 ? 100 : 300, () => get('/animals', query))))
    deep.push(median(await time(n > 100_000 ? 20 : 100, () => get('/animals', `sort=age&offset=${n / 2}`))))
    await closeDatabase()
    if (config.kind === 'sqlite') rmSync(config.path, { force: true })
  }
  for (const [, label] of FIRST_PAGES) {
    const [small, , large] = first[label]
    row(
      'Scale',
      `${kind}: first page ${label}, 1,000,000 animals`,
      `p50 ${ms(large)}`,
      `1,000: ${ms(small)}; 100,000: ${ms(first[label][1])}`,
      `${ratio(large, small)} (target ≤ 2×)`,
    )
  }
  row(
    'Scale',
    `${kind}: page at offset n/2 by age`,
    SIZES.map((n, i) => `${n.toLocaleString('en')}: ${ms(deep[i])}`).join('; '),
    '',
    'grows with the offset: OFFSET reads every row it skips',
  )
}

// 6. Deploy: reruns against moto, through a proxy that counts the AWS calls.

async function deployReruns() {
  const moto = await startMoto()
  if (typeof moto === 'string') return row('Deploy', `skipped: ${moto}`, '', '', '')
  log('deploy…')
  const project = join(work, 'project')
  mkdirSync(project)
  for (const file of ['api.ts', 'db.ts', 'seed.ts', 'deploy.ts', 'fake_db.json', 'package.json'])
    cpSync(file, join(project, file))
  symlinkSync(join(process.cwd(), 'node_modules'), join(project, 'node_modules'))
  const deploy = async () => {
    const proxy = await startProxy(moto.endpoint)
    const started = performance.now()
    // Not spawnSync: the proxy runs in this process.
    await promisify(execFile)(
      process.execPath,
      [join('node_modules', 'tsx', 'dist', 'cli.mjs'), 'deploy.ts', 'rds', '--yes'],
      {
        cwd: project,
        encoding: 'utf8',
        env: {
          ...process.env,
          AWS_ENDPOINT_URL: proxy.endpoint,
          AWS_ACCESS_KEY_ID: 'bench',
          AWS_SECRET_ACCESS_KEY: 'bench',
          AWS_REGION: REGION,
          PG_PASSWORD: '',
        },
      },
    )
    const wall = performance.now() - started
    await proxy.close()
    // The seeder's invocation apart: every deploy runs it (the migrations that are due, none on a rerun).
    const writes = proxy.writes.filter((w) => !w.endsWith('/invocations'))
    return { wall, reads: proxy.calls.length - proxy.writes.length, writes }
  }
  // moto runs no function code: each deploy's seeder invocation answers what the real seeder would.
  const { seederAnswer } = await import('./test/deploying.ts')
  await moto.answerInvocations([seederAnswer('loaded'), seederAnswer('loaded before'), seederAnswer('loaded before')])
  try {
    const fresh = await deploy()
    const unchanged = await deploy()
    writeFileSync(
      join(project, 'api.ts'),
      readFileSync(join(project, 'api.ts'), 'utf8').replace("'hello to nobody'", "'hello to everybody'"),
    )
    const changed = await deploy()
    const base = `a fresh deploy: ${fresh.reads} reads, ${fresh.writes.length} writes, ${(fresh.wall / 1000).toFixed(1)} s`
    // Each run also invokes the seeder once, counted in neither.
    row(
      'Deploy',
      'rds, rerun with no change',
      `${unchanged.reads} reads, ${unchanged.writes.length} writes, ${(unchanged.wall / 1000).toFixed(1)} s`,
      base,
      `${ratio(unchanged.wall, fresh.wall)} of the time (target: no write)`,
    )
    row(
      'Deploy',
      'rds, rerun after a one-line change in api.ts',
      `${changed.reads} reads, ${changed.writes.length} writes, ${(changed.wall / 1000).toFixed(1)} s`,
      base,
      `${ratio(changed.wall, fresh.wall)}: ${changed.writes.map((w) => w.replace(/^(\w+) \/[\d-]+\/functions\//, '$1 ')).join(', ')}`,
    )
  } finally {
    moto.stop()
  }
}

// 7. In 256 MB: the handler under the heap sizes Lambda gives Node for a 256 MB function, after a burst of logins.

/** The V8 heap sizes Lambda's Node.js runtime starts a function of `mb` MB with, unless NODE_OPTIONS sets its own:
 * its bootstrap passes --max-semi-space-size and --max-old-space-size, worked out from AWS_LAMBDA_FUNCTION_MEMORY_SIZE
 * (https://gist.github.com/davidjb/432ea4e1c89f399ec412270539fe126f, the nodejs20.x bootstrap), as 5% and 90% of it
 * (lambci's copy of that runtime: https://github.com/lambci/node-custom-lambda/blob/master/v14.x/bootstrap.c). */
const lambdaHeap = (mb: number) => [
  `--max-semi-space-size=${Math.floor((mb * 5) / 100)}`,
  `--max-old-space-size=${Math.floor((mb * 90) / 100)}`,
]

async function memory(task: string, samplePath: string) {
  log('256 MB…')
  const logins = 20
  const login = JSON.stringify(
    event(
      '/auth/token',
      '',
      'POST',
      new URLSearchParams({ username: 'juniper', password: SAMPLE_PASSWORD }).toString(),
      { 'content-type': 'application/x-www-form-urlencoded' },
    ),
  )
  // One container takes one request at a time: the burst comes one login after another, as fast as they go.
  const script = `const { handler } = await import('./api.mjs');
    for (let i = 0; i < ${logins}; i++) { const r = await handler(${login}); if (r.statusCode !== 200) throw new Error(r.body) }
    for (let i = 0; i < 200; i++) await handler(${JSON.stringify(event('/animals', 'sort=age'))});
    console.log(${peakRss})`
  const env = { AWS_LAMBDA_FUNCTION_NAME: 'bench', JWT_KEY: process.env.JWT_KEY, DB_PATH: samplePath }
  const peak = Number((await runNode([...lambdaHeap(256), '--input-type=module', '-e', script], task, env)).last)
  const bare = Number((await runNode([...lambdaHeap(256), '-e', `console.log(${peakRss})`], task, {})).last)
  row(
    'In 256 MB',
    `peak RSS after ${logins} logins (scrypt, 64 MiB each) and 200 GET /animals, ${lambdaHeap(256).join(' ')}`,
    `${peak.toFixed(0)} MB`,
    `node -e 0 with the same flags: ${bare.toFixed(0)} MB`,
    'target < 200 MB',
  )
}

// 7. The common-password check: the package without the list (the seeder keeps it in the database), and what the
// check adds to a container's first new password against its second.

async function commonPasswords(task: string) {
  log('common passwords…')
  const list = await commonPasswordList()
  if (readdirSync(task).some((f) => readFileSync(join(task, f), 'utf8').includes('"iloveyou')))
    throw new Error('a file of the package holds the common-password list')
  row(
    'Common passwords',
    `build.zip, the list (${list.length} passwords of 8+ characters) in the database instead`,
    `${(statSync('build.zip').size / 1024).toFixed(1)} KB`,
    `the list, sorted and deflated, as the package carried it: ${(deflateRawSync(JSON.stringify(list.toSorted()), { level: 9 }).length / 1024).toFixed(1)} KB`,
    'target ≤ 80 KB',
  )
  const template = join(work, 'registration.db')
  const db = await openDatabase(await migrated({ kind: 'sqlite', path: template, onNetworkFs: false }))
  await loadCommonPasswords(db, list)
  await db.close()
  const registration = (n: number) =>
    JSON.stringify(
      event(
        '/auth/registration',
        '',
        'POST',
        JSON.stringify({ username: `user${n}`, email: `user${n}@example.com`, password: 'kestrel harbour' }),
        { 'content-type': 'application/json' },
      ),
    )
  const script = `const { handler } = await import('./api.mjs'); const times = []
    for (const e of [${registration(1)}, ${registration(2)}]) {
      const started = performance.now(); const r = await handler(e); times.push(performance.now() - started)
      if (r.statusCode !== 200) throw new Error(r.body)
    }
    console.log(JSON.stringify(times))`
  const first: number[] = []
  const second: number[] = []
  for (let i = 0; i < 9; i++) {
    copyFileSync(template, join(work, 'registration-run.db'))
    const { last } = await runNode(['--input-type=module', '-e', script], task, {
      AWS_LAMBDA_FUNCTION_NAME: 'bench',
      JWT_KEY: process.env.JWT_KEY,
      DB_PATH: join(work, 'registration-run.db'),
    })
    const [a, b] = JSON.parse(last)
    first.push(a)
    second.push(b)
  }
  row(
    'Registration',
    "a container's first POST /auth/registration: checks the list, hashes (median of 9)",
    ms(median(first)),
    `its second: ${ms(median(second))}`,
    `+${ms(median(first) - median(second))}`,
  )
}

// 8. The worst request one can build on each route that takes a body, in a fresh Node 24 on the unzipped package: its CPU
// time and the process's peak memory, against a plain GET in the same run (API.md, Limits: no request costs more than
// one password hash, and a body past 64 KB is refused before it is parsed).

async function worstRequests(task: string, samplePath: string) {
  log('worst requests…')
  const json = { 'content-type': 'application/json' }
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const mixed = 'аa'.repeat(21_000) // 63 KB of Cyrillic and Latin: what the one-script check would read letter by letter
  const nested = `${'['.repeat(32_000)}${']'.repeat(32_000)}`
  // juniper's token, from this process's handler on the same sample (the same JWT_KEY): staff, for the routes that need it.
  await useDatabase({ kind: 'sqlite', path: samplePath, onNetworkFs: false })
  const login = await handler(event('/auth/token', '', 'POST', `username=juniper&password=${SAMPLE_PASSWORD}`, form))
  await closeDatabase()
  const staff = { ...json, authorization: `Bearer ${JSON.parse(login.body!).access_token}` }
  const cases: [string, ReturnType<typeof event>][] = [
    ['GET /animals/1 (the baseline)', event('/animals/1')],
    [
      'POST /auth/token, the right password: one hash',
      event('/auth/token', '', 'POST', `username=juniper&password=${SAMPLE_PASSWORD}`, form),
    ],
    [
      'POST /auth/token, an unknown user: one hash',
      event('/auth/token', '', 'POST', 'username=nobody&password=guess', form),
    ],
    [
      'POST /auth/token, a 64 KB password',
      event('/auth/token', '', 'POST', `username=juniper&password=${'x'.repeat(64 * 1024 - 40)}`, form),
    ],
    [
      'POST /auth/registration, a new user: one hash',
      event(
        '/auth/registration',
        '',
        'POST',
        JSON.stringify({ username: 'newcomer', email: 'n@example.com', password: 'kestrel harbour' }),
        json,
      ),
    ],
    [
      'POST /auth/registration, a 64 KB username of two scripts',
      event(
        '/auth/registration',
        '',
        'POST',
        JSON.stringify({ username: mixed, email: 'm@example.com', password: 'kestrel harbour' }),
        json,
      ),
    ],
    ['POST /auth/registration, JSON nested 32,000 deep', event('/auth/registration', '', 'POST', nested, json)],
    [
      'PUT /users/me/password, the right current password: two hashes',
      event(
        '/users/me/password',
        '',
        'PUT',
        JSON.stringify({ current_password: SAMPLE_PASSWORD, new_password: 'osprey lighthouse' }),
        staff,
      ),
    ],
    [
      'POST /animals (staff), a 64 KB name',
      event('/animals', '', 'POST', JSON.stringify({ name: mixed.slice(0, 40_000), age: 1, kind: 'cat' }), staff),
    ],
    ['PUT /animals/1 (staff), JSON nested 32,000 deep', event('/animals/1', '', 'PUT', nested, staff)],
    [
      'POST /auth/registration, 4 MB of base64',
      { ...event('/auth/registration', '', 'POST', 'A'.repeat(4 * 1024 * 1024), json), isBase64Encoded: true },
    ],
  ]
  const measured: { what: string; status: number; cpu: number; rss: number }[] = []
  for (const [what, request] of cases) {
    const copy = join(work, 'worst.db')
    copyFileSync(samplePath, copy)
    const script = `const { handler } = await import('./api.mjs'); await handler(${JSON.stringify(event('/greet'))})
      const cpu = process.cpuUsage(); const { statusCode } = await handler(${JSON.stringify(request)}); const used = process.cpuUsage(cpu)
      console.log(JSON.stringify({ status: statusCode, cpu: (used.user + used.system) / 1000, rss: ${peakRss} }))`
    writeFileSync(join(task, 'worst.mjs'), script) // a file: the 4 MB request does not fit in a command line
    const { last } = await runNode(['worst.mjs'], task, {
      AWS_LAMBDA_FUNCTION_NAME: 'bench',
      JWT_KEY: process.env.JWT_KEY,
      DB_PATH: copy,
    })
    measured.push({ what, ...JSON.parse(last) })
  }
  rmSync(join(task, 'worst.mjs'))
  const [base] = measured
  for (const m of measured) {
    row(
      'Worst request',
      `${m.what}: ${m.status}`,
      `${ms(m.cpu)} CPU, ${m.rss.toFixed(0)} MB`,
      m === base ? '' : `GET: ${ms(base.cpu)}, ${base.rss.toFixed(0)} MB`,
      m === base
        ? ''
        : `${ratio(m.cpu, base.cpu)} CPU, ${m.rss >= base.rss ? '+' : ''}${(m.rss - base.rss).toFixed(0)} MB`,
    )
  }
}

// 9. What a change added to a cold start and to a login: the build of its commit against the build of the commit
// before it, alternated in one run. Each build from `git archive` of its commit, packaged by its own deploy.ts, on a
// database its own seed.ts set up; a user registered through it. Needs the repository's history (not a shallow clone).

const CHANGES: [rev: string, what: string][] = [
  ['9c2e78b', 'the access model, with the common-password check'],
  ['b7146e4', 'limits, with the failed-login table'],
  ['c4b5366', 'JSON logs: a line per request'],
  ['538618f', 'schemas built on first use'],
  ['dd2767a', 'common passwords in the database'],
]

const LOGIN = { username: 'ab_login', password: 'kestrel harbour' }
const registration = JSON.stringify(
  event('/auth/registration', '', 'POST', JSON.stringify({ ...LOGIN, email: 'ab_login@example.com' }), {
    'content-type': 'application/json',
  }),
)
const login = JSON.stringify(
  event('/auth/token', '', 'POST', new URLSearchParams(LOGIN).toString(), {
    'content-type': 'application/x-www-form-urlencoded',
  }),
)

/** The unzipped package of `rev` and a copy of its database with a user who can log in. */
async function buildAt(rev: string) {
  const dir = join(work, `at-${rev.replace('^', '-before')}`)
  mkdirSync(dir)
  try {
    execFileSync('sh', ['-c', `git archive "$0" | tar -x -C "$1"`, rev, dir], { stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (error) {
    throw new Error(
      `git archive ${rev}: ${(error as { stderr?: string }).stderr}(changes needs the repository's history)`,
    )
  }
  symlinkSync(join(process.cwd(), 'node_modules'), join(dir, 'node_modules'))
  const tsx = join(process.cwd(), 'node_modules', 'tsx', 'dist', 'cli.mjs')
  execFileSync(process.execPath, [tsx, 'deploy.ts', 'package', '--region', REGION], { cwd: dir, stdio: 'ignore' })
  const task = join(dir, 'task')
  mkdirSync(task)
  for (const [name, data] of Object.entries(unzipSync(readFileSync(join(dir, 'build.zip'))))) {
    writeFileSync(join(task, name), data)
  }
  const db = join(dir, 'sample.db')
  const env = { ...process.env, DB_LOCATION: 'local', DB_PATH: db }
  execFileSync(process.execPath, [tsx, 'seed.ts'], { cwd: dir, env, stdio: 'ignore' })
  const script = `const { handler } = await import('./api.mjs'); const r = await handler(${registration})
    if (r.statusCode !== 200) throw new Error(r.body)`
  await runNode(['--input-type=module', '-e', script], task, {
    AWS_LAMBDA_FUNCTION_NAME: 'bench',
    DB_PATH: db,
    JWT_KEY: process.env.JWT_KEY,
  })
  return { task, db }
}

type Build = Awaited<ReturnType<typeof buildAt>>
const abEnv = (build: Build) => {
  const env = { AWS_LAMBDA_FUNCTION_NAME: 'bench', DB_PATH: join(work, 'ab.db'), JWT_KEY: process.env.JWT_KEY }
  copyFileSync(build.db, env.DB_PATH)
  return env
}

/** A fresh Node 24 on `build`: the wall time to its answer to a first GET /animals/1 (the sample's). */
async function firstRead(build: Build) {
  const script = `const { handler } = await import('./api.mjs'); const r = await handler(${JSON.stringify(event('/animals/1'))})
    if (r.statusCode !== 200) throw new Error(r.body)`
  return (await runNode(['--import', lambdaConsole, '--input-type=module', '-e', script], build.task, abEnv(build)))
    .wall
}

/** A fresh Node 24 on `build`: three logins after a first one, each timed in the process. */
async function warmLogins(build: Build): Promise<number[]> {
  const script = `const { writeSync } = process.getBuiltinModule('node:fs'); const { handler } = await import('./api.mjs'); const times = []
    for (let i = 0; i < 4; i++) {
      const started = process.hrtime.bigint(); const r = await handler(${login})
      times.push(Number(process.hrtime.bigint() - started) / 1e6)
      if (r.statusCode !== 200) throw new Error(r.body)
    }
    writeSync(1, JSON.stringify(times.slice(1)))`
  const { last } = await runNode(
    ['--import', lambdaConsole, '--input-type=module', '-e', script],
    build.task,
    abEnv(build),
  )
  return JSON.parse(last)
}

async function changes() {
  for (const [rev, what] of CHANGES) {
    log(`what ${rev} added…`)
    const [before, after] = [await buildAt(`${rev}^`), await buildAt(rev)]
    const reads = { before: [] as number[], after: [] as number[] }
    for (let i = 0; i < 21; i++) {
      reads.before.push(await firstRead(before))
      reads.after.push(await firstRead(after))
    }
    const logins = { before: [] as number[], after: [] as number[] }
    for (let i = 0; i < 7; i++) {
      logins.before.push(...(await warmLogins(before)))
      logins.after.push(...(await warmLogins(after)))
    }
    const delta = (a: number[], b: number[]) =>
      `${median(a) >= median(b) ? '+' : '−'}${ms(Math.abs(median(a) - median(b)))}`
    row(
      'A/B',
      `${what} (${rev}): cold start, first GET /animals/1, 21 alternated`,
      ms(median(reads.after)),
      `${rev}^: ${ms(median(reads.before))}`,
      delta(reads.after, reads.before),
    )
    row(
      'A/B',
      `${what} (${rev}): a login in a warm process, 21 alternated`,
      ms(median(logins.after)),
      `${rev}^: ${ms(median(logins.before))}`,
      delta(logins.after, logins.before),
    )
  }
}

// Run

// `npm run bench -- scale deploy` runs only those sections; all by default.
const SECTIONS = ['package', 'coldstart', 'passwords', 'worst', 'warm', 'scale', 'deploy', 'memory', 'changes']
const only = process.argv.slice(2)
const unknown = only.filter((x) => !SECTIONS.includes(x))
if (unknown.length) throw new Error(`unknown section ${unknown.join(', ')}: choose from ${SECTIONS.join(', ')}`)
const wanted = (section: string) => !only.length || only.includes(section)

let n = 0
const sqliteFresh = () => migrated({ kind: 'sqlite', path: join(work, `db-${++n}.db`), onNetworkFs: false })
const server = wanted('coldstart') || wanted('scale') ? await startPostgres() : 'not asked for'
try {
  const needsPackage = ['package', 'coldstart', 'passwords', 'worst', 'memory'].some(wanted)
  const task = needsPackage ? packageCode() : ''
  const samplePath = join(work, 'sample.db')
  const sample = await openDatabase({ kind: 'sqlite', path: samplePath, onNetworkFs: false })
  await setUp(sample, 'local', await commonPasswordList())
  await sample.close()

  if (wanted('coldstart')) {
    if (!node24) row('Cold start', 'skipped: needs Node 24 (NODE24)', '', '', '')
    else {
      await sqliteColdStart(task)
      if (typeof server === 'string') row('Cold start', `PostgreSQL skipped: ${server}`, '', '', '')
      else await postgresColdStart(task, server)
    }
  }
  if (wanted('passwords')) {
    if (!node24) row('Common passwords', 'skipped: needs Node 24 (NODE24)', '', '', '')
    else await commonPasswords(task)
  }
  if (wanted('worst')) {
    if (!node24) row('Worst request', 'skipped: needs Node 24 (NODE24)', '', '', '')
    else await worstRequests(task, samplePath)
  }
  if (wanted('warm')) {
    await useDatabase({ kind: 'sqlite', path: samplePath, onNetworkFs: false })
    await warm(samplePath)
    await closeDatabase()
  }
  if (wanted('scale')) {
    const probe = await openDatabase(await sqliteFresh())
    await scale(`SQLite (${probe.label.match(/\(([^)]+)\)$/)![1]})`, sqliteFresh)
    await probe.close()
    if (typeof server === 'string') row('Scale', `PostgreSQL skipped: ${server}`, '', '', '')
    else {
      Object.assign(process.env, server.env, { DB_LOCATION: 'rds', PG_DATABASE: 'postgres' })
      const admin = await openDatabase(configFromEnv())
      const pgFresh = async (): Promise<DbConfig> => {
        const name = `bench_${++n}`
        await admin.all(`DROP DATABASE IF EXISTS ${name}`)
        await admin.all(`CREATE DATABASE ${name}`)
        return migrated({ ...(configFromEnv() as Extract<DbConfig, { kind: 'postgres' }>), database: name })
      }
      await scale('PostgreSQL', pgFresh)
      await closeDatabase()
      await admin.close()
    }
  }
  if (wanted('deploy')) await deployReruns()
  if (wanted('memory')) {
    if (!node24) row('In 256 MB', 'skipped: needs Node 24 (NODE24)', '', '', '')
    else await memory(task, samplePath)
  }
  if (wanted('changes')) {
    if (!node24) row('A/B', 'skipped: needs Node 24 (NODE24)', '', '', '')
    else await changes()
  }
} finally {
  await closeDatabase()
  if (typeof server !== 'string') server.stop()
  rmSync(work, { recursive: true, force: true })
}

const header = ['area', 'what', 'measured', 'baseline (same run)', 'ratio / target']
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`
console.log(line(header))
console.log(line(widths.map((w) => '-'.repeat(w))))
for (const r of rows) console.log(line(r))
console.log(
  `\n${cpus().length} cores (${cpus()[0]?.model}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB; node ${process.version}` +
    `${node24 ? `, Node 24 runs: ${execFileSync(node24, ['--version'], { encoding: 'utf8' }).trim()}` : ''}`,
)
