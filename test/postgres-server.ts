// A throwaway PostgreSQL cluster that, like RDS, accepts only TLS connections with a password.
// Or the server that PG_ENDPOINT (with PG_USERNAME, PG_PASSWORD, PG_PORT) names.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync, appendFileSync } from 'node:fs'
import { freePort } from './net.ts'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'

export interface PostgresServer {
  env: Record<string, string>
  stop(): void
  /** Our own cluster only: stops the server (its data kept) and starts it again, as RDS does when it restarts. */
  halt?(): void
  resume?(): void
}

function findBin(): string | undefined {
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : []
  for (const v of versions) if (existsSync(join(root, v, 'bin', 'initdb'))) return join(root, v, 'bin')
  try {
    return join(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim())
  } catch {
    return undefined
  }
}

/** Starts a cluster, or says why it cannot (undefined and a reason). */
export async function startPostgres(): Promise<PostgresServer | string> {
  if (process.env.PG_ENDPOINT) {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('PG_'))) as Record<
      string,
      string
    >
    return { env, stop() {} }
  }
  const bin = findBin()
  if (!bin) return 'no PostgreSQL server binaries (initdb) found, and PG_ENDPOINT is not set'
  const asRoot = process.getuid?.() === 0
  // initdb refuses to run as root: run the cluster as the postgres user.
  const run = (cmd: string, args: string[]) =>
    asRoot
      ? execFileSync('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args], { stdio: 'pipe' })
      : execFileSync(join(bin, cmd), args, { stdio: 'pipe' })

  const dir = mkdtempSync(join(tmpdir(), 'buddy-pg-'))
  const data = join(dir, 'data')
  const password = randomBytes(16).toString('hex')
  writeFileSync(join(dir, 'pw'), password)
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout',
      join(dir, 'server.key'),
      '-out',
      join(dir, 'server.crt'),
    ],
    { stdio: 'pipe' },
  )
  execFileSync('chmod', ['600', join(dir, 'server.key')])
  if (asRoot) execFileSync('chown', ['-R', 'postgres:', dir])
  run('initdb', ['-D', data, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${join(dir, 'pw')}`, '--no-sync'])
  const port = await freePort()
  appendFileSync(
    join(data, 'postgresql.conf'),
    [
      `listen_addresses = '127.0.0.1'`,
      `port = ${port}`,
      `unix_socket_directories = '${dir}'`,
      `ssl = on`,
      `ssl_cert_file = '${join(dir, 'server.crt')}'`,
      `ssl_key_file = '${join(dir, 'server.key')}'`,
      `fsync = off`,
      '',
    ].join('\n'),
  )
  // Only TLS over TCP, as RDS with rds.force_ssl = 1; and as on RDS, a member of rds_iam logs in with its token sent
  // as a cleartext password (RDS checks it through PAM: here, the role's password is the token).
  writeFileSync(
    join(data, 'pg_hba.conf'),
    'hostssl all +rds_iam 127.0.0.1/32 password\nhostssl all all 127.0.0.1/32 scram-sha-256\n',
  )
  if (asRoot) execFileSync('chown', ['postgres:', join(data, 'pg_hba.conf')])
  run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '60', 'start'])
  return {
    env: {
      PG_ENDPOINT: '127.0.0.1',
      PG_PORT: String(port),
      PG_USERNAME: 'postgres',
      PG_PASSWORD: password,
      PG_SSLMODE: 'verify-full',
      PG_SSLROOTCERT: join(dir, 'server.crt'),
    },
    stop() {
      try {
        run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'])
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    },
    halt() {
      run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'])
    },
    resume() {
      run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '60', 'start'])
    },
  }
}
