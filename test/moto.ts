// moto_server on 127.0.0.1: a real AWS API emulator for IAM, Lambda, EFS, EC2, RDS, CloudWatch Logs and STS.
// It records every request it gets, so a test can check what deploy.ts sent and what it did not. It runs no
// function code: each invocation answers what a test queued (answerInvocations), else a fixed text.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { freePort } from './net.ts'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Recorded {
  method: string
  path: string
  /** The query string's parameters (Lambda's Qualifier, for one). */
  query: URLSearchParams
  target?: string
  body: string
}

export interface Moto {
  endpoint: string
  /** Forgets every resource and every recorded request. */
  reset(): Promise<void>
  /** The requests received since the last reset (or since `since`). */
  requests(): Recorded[]
  /** What the next Lambda invocations answer, one payload each, in order. */
  answerInvocations(payloads: unknown[]): Promise<void>
  stop(): void
}


export async function startMoto(): Promise<Moto | string> {
  try {
    execFileSync('moto_server', ['--help'], { stdio: 'ignore' })
  } catch {
    return 'moto_server is not installed (pip install "moto[server]")'
  }
  const dir = mkdtempSync(join(tmpdir(), 'buddy-moto-'))
  const recording = join(dir, 'recording.jsonl')
  const port = await freePort()
  const child: ChildProcess = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    env: {
      ...process.env,
      MOTO_IAM_LOAD_MANAGED_POLICIES: 'true',
      MOTO_ENABLE_RECORDING: 'true',
      MOTO_RECORDER_FILEPATH: recording,
      // AWS's default: 1,000 concurrent executions in all, of which 100 stay unreserved.
      MOTO_LAMBDA_CONCURRENCY_QUOTA: '1000',
    },
    stdio: 'ignore',
  })
  const endpoint = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 30_000
  for (;;) {
    const up = await fetch(`${endpoint}/moto-api/`).then((r) => r.ok, () => false)
    if (up) break
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill()
      return `moto_server did not start on ${endpoint}`
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  const configure = () =>
    fetch(`${endpoint}/moto-api/config`, { method: 'POST', body: JSON.stringify({ lambda: { use_docker: false } }) })
  await configure()
  return {
    endpoint,
    async reset() {
      await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' })
      await configure()
      writeFileSync(recording, '')
    },
    async answerInvocations(payloads) {
      const results = payloads.map((p) => (typeof p === 'string' ? p : JSON.stringify(p)))
      const answer = await fetch(`${endpoint}/moto-api/static/lambda-simple/response`, {
        method: 'POST',
        body: JSON.stringify({ results, region: 'us-east-1' }),
      })
      if (!answer.ok) throw new Error(`moto refused the queued answers: ${answer.status}`)
    },
    requests() {
      if (!existsSync(recording)) return []
      return readFileSync(recording, 'utf8').split('\n').filter(Boolean).map((line) => {
        const entry = JSON.parse(line)
        const body = entry.body_encoded ? Buffer.from(entry.body, 'base64').toString('utf8') : entry.body ?? ''
        const target = entry.headers['X-Amz-Target'] ?? entry.headers['x-amz-target']
        const url = new URL(entry.url)
        return { method: entry.method, path: url.pathname, query: url.searchParams, target, body }
      }).filter((r) => !r.path.startsWith('/moto-api'))
    },
    stop() {
      child.kill()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** The AWS operation of a recorded request: its Action (query APIs) or X-Amz-Target (JSON APIs),
 * else its method and path (REST APIs: Lambda, EFS). */
export function operationOf(r: Recorded): string {
  const action = r.target?.split('.').at(-1) ?? new URLSearchParams(r.body).get('Action')
  return action ?? `${r.method} ${r.path}`
}

/** Requests that change something: everything but lookups and Lambda invocations. */
export function changes(requests: Recorded[]): string[] {
  return requests
    .map(operationOf)
    .filter((op) => !/^(Describe|Get|List)|^GET |\/invocations$/.test(op))
}
