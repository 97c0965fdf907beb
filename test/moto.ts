// moto_server on 127.0.0.1: a real AWS API emulator for IAM, Lambda, EFS, EC2, RDS, CloudWatch Logs and STS.
// It records every request it gets, so a test can check what deploy.ts sent and what it did not. It runs no
// function code: each invocation answers what a test queued (answerInvocations), else a fixed text.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
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
  /** When it was signed (SigV4's X-Amz-Date, to the second). */
  signed?: Date
}

/** A request as the proxy saw it: what moto's recorder keeps, and the access key id of its signature. */
export interface Seen extends Omit<Recorded, 'signed'> {
  credential?: string
}

export interface Moto {
  endpoint: string
  /** Forgets every resource and every recorded request. */
  reset(): Promise<void>
  /** The requests received since the last reset (or since `since`). */
  requests(): Recorded[]
  /** AWS Backup's recovery points of each resource, by ARN (moto has none: see backupsKept). */
  recoveryPoints: Map<string, RecoveryPoint[]>
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
  const motoEndpoint = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 30_000
  for (;;) {
    const up = await fetch(`${motoEndpoint}/moto-api/`).then(
      (r) => r.ok,
      () => false,
    )
    if (up) break
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill()
      return `moto_server did not start on ${motoEndpoint}`
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  // In front of moto, what it leaves out of Lambda's answers (startProxy): the callers see AWS's behaviour.
  const front = await startProxy(motoEndpoint)
  const endpoint = front.endpoint
  const configure = () =>
    fetch(`${endpoint}/moto-api/config`, { method: 'POST', body: JSON.stringify({ lambda: { use_docker: false } }) })
  await configure()
  return {
    endpoint,
    recoveryPoints: front.recoveryPoints,
    async reset() {
      front.forget()
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
      return readFileSync(recording, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const entry = JSON.parse(line)
          const body = entry.body_encoded ? Buffer.from(entry.body, 'base64').toString('utf8') : (entry.body ?? '')
          const target = entry.headers['X-Amz-Target'] ?? entry.headers['x-amz-target']
          const url = new URL(entry.url)
          const date = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(entry.headers['X-Amz-Date'] ?? '')
          const signed = date
            ? new Date(`${date[1]}-${date[2]}-${date[3]}T${date[4]}:${date[5]}:${date[6]}Z`)
            : undefined
          return { method: entry.method, path: url.pathname, query: url.searchParams, target, body, signed }
        })
        .filter((r) => !r.path.startsWith('/moto-api'))
    },
    stop() {
      void front.close()
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
  return requests.map(operationOf).filter((op) => !/^(Describe|Get|List)|^GET |\/invocations$/.test(op))
}

/** The AWS operation of a request as it goes by: the same names as operationOf. */
function operationOfRequest(
  method: string,
  path: string,
  headers: Record<string, string | string[] | undefined>,
  body: string,
): string {
  const target = headers['x-amz-target']
  if (typeof target === 'string') return target.split('.').at(-1)!
  const action = headers['content-type']?.includes('x-www-form-urlencoded')
    ? new URLSearchParams(body).get('Action')
    : null
  return action ?? `${method} ${path}`
}

/** A call that changes something, the seeder's invocation included. */
export const isWrite = (operation: string) => !/^(Describe|Get|List|Filter)|^(GET|HEAD) /.test(operation)

export interface ProxyOptions {
  /** Keep every request in `seen`. */
  record?: boolean
  /** Called once moto has answered the n-th write (from 1): true cuts the answer off, the caller never sees it. */
  afterWrite?(n: number, operation: string): boolean
  /** Answer this call as AWS does when it throttles, instead of passing it on. */
  throttle?(operation: string): boolean
  /** Answer this call with an error of a JSON API (Lambda's, EFS's) instead of passing it on: its type, message and
   * status (409 unless said). `before`: the calls so far; `body`: the request's. */
  refuse?(
    operation: string,
    before: string[],
    body: string,
  ): { type: string; message: string; status?: number } | undefined
  /** Answers each invocation with what this gives for the function and its event (the real seeder code, run here
   * against a real database), or with the runtime's error document where it throws: moto runs no function code. */
  invoke?(fn: string, event: any): Promise<unknown>
  /** Changes moto's JSON answer to this call: AWS's, in a state moto never shows (a function Failed, Inactive). */
  amend?(operation: string, answer: any, before: string[]): void
}

export interface Proxy {
  endpoint: string
  /** Every call that went through, and the writes among them, in order. */
  calls: string[]
  writes: string[]
  /** The calls answered with a throttling error. */
  throttled: string[]
  /** AWS Backup's recovery points of each resource (by ARN), as ListRecoveryPointsByResource answers them. */
  recoveryPoints: Map<string, RecoveryPoint[]>
  /** With `record`, every AWS request it received (the ones it answers itself included), with the access key that
   * signed it. */
  seen: Seen[]
  /** Forgets what it keeps for moto (after moto's reset). */
  forget(): void
  close(): Promise<void>
}

/** An HTTP proxy in front of moto that sees each AWS call: to cut a deploy off after its k-th write, or to
 * play AWS's throttling errors (Lambda's 429 TooManyRequestsException, the query APIs' Throttling). It also adds
 * what moto's simple Lambda leaves out: the X-Amz-Function-Error header of an invocation whose answer is the
 * runtime's error document (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html#API_Invoke_ResponseSyntax), and
 * a function's FileSystemConfigs, which moto 5.2.1 takes and never gives back (see mounts). */
export async function startProxy(target: string, options: ProxyOptions = {}): Promise<Proxy> {
  const calls: string[] = []
  const writes: string[] = []
  const throttled: string[] = []
  const fileSystems = mounts()
  const backups = backupsKept()
  const metrics = percentiles()
  const seen: Seen[] = []
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk)
    const body = Buffer.concat(chunks)
    const url = new URL(req.url!, target)
    const operation = operationOfRequest(req.method!, url.pathname, req.headers, body.toString('utf8'))
    const amzTarget = req.headers['x-amz-target']
    if (options.record && !url.pathname.startsWith('/moto-api'))
      seen.push({
        method: req.method!,
        path: url.pathname,
        query: url.searchParams,
        target: typeof amzTarget === 'string' ? amzTarget : undefined,
        body: body.toString('utf8'),
        credential: /Credential=([^/]+)\//.exec(String(req.headers.authorization ?? ''))?.[1],
      })
    if (options.throttle?.(operation)) {
      throttled.push(operation)
      if (req.headers['x-amz-target'] || !req.headers['content-type']?.includes('x-www-form-urlencoded')) {
        // Lambda: https://docs.aws.amazon.com/lambda/latest/api/API_GetFunction.html#API_GetFunction_Errors
        res.writeHead(429, { 'content-type': 'application/json', 'x-amzn-errortype': 'TooManyRequestsException' })
        return void res.end(
          JSON.stringify({ Type: 'User', message: 'Rate exceeded', Reason: 'CallerRateLimitExceeded' }),
        )
      }
      res.writeHead(400, { 'content-type': 'text/xml' })
      return void res.end(
        '<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>throttled</RequestId></ErrorResponse>',
      )
    }
    const filled = backups.answer(req.method!, url, body)
    if (filled) {
      calls.push(operation)
      if (isWrite(operation)) writes.push(operation)
      res.writeHead(200, { 'content-type': 'application/json' })
      return void res.end(JSON.stringify(filled))
    }
    const invoked = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/.exec(url.pathname)
    if (invoked && options.invoke) {
      calls.push(operation)
      writes.push(operation)
      const event = body.length ? JSON.parse(body.toString('utf8')) : {}
      try {
        const answer = await options.invoke(decodeURIComponent(invoked[1]), event)
        res.writeHead(200, { 'content-type': 'application/json' })
        return void res.end(JSON.stringify(answer))
      } catch (error) {
        // The runtime's error document: https://docs.aws.amazon.com/lambda/latest/dg/nodejs-exceptions.html
        const e = error as Error
        res.writeHead(200, { 'content-type': 'application/json', 'x-amz-function-error': 'Unhandled' })
        return void res.end(JSON.stringify({ errorType: e.name, errorMessage: e.message, trace: [] }))
      }
    }
    const refused = options.refuse?.(operation, calls, body.toString('utf8'))
    if (refused) {
      calls.push(operation)
      res.writeHead(refused.status ?? 409, { 'content-type': 'application/json', 'x-amzn-errortype': refused.type })
      return void res.end(JSON.stringify({ Type: 'User', message: refused.message }))
    }
    if (operation === 'PutMetricData') metrics.put(body)
    const percentile = operation === 'GetMetricData' ? metrics.split(body) : undefined
    if (percentile && !percentile.forward) {
      calls.push(operation)
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' })
      return void res.end(JSON.stringify({ MetricDataResults: percentile.own, Messages: [] }))
    }
    const headers = Object.fromEntries(
      Object.entries(req.headers).filter(
        ([k]) => !['host', 'connection', 'expect', 'content-length', 'transfer-encoding'].includes(k),
      ),
    ) as Record<string, string>
    const sent = percentile?.forward ?? body
    const answer = await fetch(url, {
      method: req.method,
      headers,
      body: sent.length ? new Uint8Array(sent) : undefined,
    })
    let payload: Buffer = Buffer.from(await answer.arrayBuffer())
    if (answer.ok && percentile) {
      const merged = JSON.parse(payload.toString('utf8'))
      merged.MetricDataResults = [...(merged.MetricDataResults ?? []), ...percentile.own]
      payload = Buffer.from(JSON.stringify(merged))
    }
    if (answer.ok) payload = ownResourceIds(fileSystems.exchange(req.method!, url, body, payload))
    const json = answer.ok && options.amend && parseJson(payload) // moto's content-type does not always say JSON
    if (json) {
      options.amend!(operation, json, calls)
      payload = Buffer.from(JSON.stringify(json))
    }
    calls.push(operation)
    if (isWrite(operation)) {
      writes.push(operation)
      if (options.afterWrite?.(writes.length, operation)) return // never answered: the caller is gone
    }
    const out: Record<string, string> = {}
    answer.headers.forEach((value, key) => {
      if (!['content-encoding', 'content-length', 'transfer-encoding', 'connection'].includes(key)) out[key] = value
    })
    if (/\/invocations$/.test(url.pathname) && isErrorDocument(payload)) out['x-amz-function-error'] = 'Unhandled'
    res.writeHead(answer.status, { ...out, 'content-length': payload.length })
    res.end(payload)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    endpoint: `http://127.0.0.1:${port}`,
    calls,
    writes,
    throttled,
    recoveryPoints: backups.recoveryPoints,
    seen,
    forget() {
      fileSystems.forget()
      backups.forget()
      metrics.forget()
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

function parseJson(payload: Buffer): any {
  try {
    return JSON.parse(payload.toString('utf8'))
  } catch {
    return undefined
  }
}

/** The Node.js runtime's answer for a handler that threw: {errorType, errorMessage, trace}. */
function isErrorDocument(payload: Buffer): boolean {
  const answer = parseJson(payload)
  return typeof answer?.errorType === 'string' && typeof answer?.errorMessage === 'string'
}

/** What moto 5.2.1 leaves out of Lambda: a function's FileSystemConfigs and LoggingConfig, which CreateFunction and
 * UpdateFunctionConfiguration take and GetFunction, GetFunctionConfiguration, PublishVersion and
 * ListVersionsByFunction never give back. Kept here per function and version, and put into those answers, so that a
 * rerun meets what AWS would show it (https://docs.aws.amazon.com/lambda/latest/api/API_FunctionConfiguration.html):
 * LoggingConfig as AWS fills it, with the function's own log group unless one was named. */
function mounts() {
  type Kept = { FileSystemConfigs?: { Arn: string; LocalMountPath: string }[]; LoggingConfig?: object }
  const latest = new Map<string, Kept>()
  const published = new Map<string, Kept>()
  const fill = (config: Kept & { Version?: string }, fn: string) => {
    const kept =
      config.Version && config.Version !== '$LATEST' ? published.get(`${fn}:${config.Version}`) : latest.get(fn)
    if (kept?.FileSystemConfigs?.length) config.FileSystemConfigs = kept.FileSystemConfigs
    if (kept?.LoggingConfig) config.LoggingConfig = kept.LoggingConfig
  }
  return {
    forget() {
      latest.clear()
      published.clear()
    },
    /** Notes the mounts and logging a request sets, and puts the kept ones into its answer. */
    exchange(method: string, url: URL, body: Buffer, payload: Buffer): Buffer {
      const path = /^\/2015-03-31\/functions(?:\/([^/]+))?(\/configuration|\/versions)?$/.exec(url.pathname)
      if (!path) return payload
      const [, named, part] = path
      const sent = body.length ? JSON.parse(body.toString('utf8')) : {}
      const fn = decodeURIComponent(named ?? sent.FunctionName ?? '')
      if (method === 'DELETE' && !url.searchParams.get('Qualifier')) latest.delete(fn)
      if ((method === 'POST' && !named) || (method === 'PUT' && part === '/configuration')) {
        const kept = { ...latest.get(fn) }
        if (sent.FileSystemConfigs) kept.FileSystemConfigs = sent.FileSystemConfigs
        if (sent.LoggingConfig) kept.LoggingConfig = { LogGroup: `/aws/lambda/${fn}`, ...sent.LoggingConfig }
        latest.set(fn, kept)
      }
      if (method === 'DELETE' || !payload.length) return payload
      const answer = JSON.parse(payload.toString('utf8'))
      if (method === 'POST' && part === '/versions') {
        published.set(`${fn}:${answer.Version}`, latest.get(fn) ?? {})
        fill(answer, fn)
      } else if (method === 'GET' && part === '/versions')
        for (const version of answer.Versions ?? []) fill(version, fn)
      else if (method === 'GET' && part === '/configuration') fill(answer, fn)
      else if (method === 'GET' && named && !part && answer.Configuration) fill(answer.Configuration, fn)
      else return payload
      return Buffer.from(JSON.stringify(answer))
    },
  }
}

/** moto 5.2.1 answers 500 to GetMetricData for a percentile statistic (p50, p99) over a period that has data. The values
 * put (PutMetricData, JSON protocol) are kept here too, and the percentile queries answered from them as CloudWatch
 * does (nearest rank, each period from StartTime); the other queries go to moto, and the answers are merged.
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_concepts.html#Percentiles */
function percentiles() {
  const kept = new Map<string, { t: number; values: number[] }[]>()
  const key = (namespace: string, metric: string, dimensions: { Name: string; Value: string }[] = []) =>
    JSON.stringify([namespace, metric, [...dimensions].sort((a, b) => a.Name.localeCompare(b.Name))])
  return {
    forget: () => kept.clear(),
    put(body: Buffer) {
      const { Namespace, MetricData = [] } = JSON.parse(body.toString('utf8'))
      for (const d of MetricData) {
        const values: number[] = []
        if (d.Values) d.Values.forEach((v: number, i: number) => values.push(...Array(d.Counts?.[i] ?? 1).fill(v)))
        else values.push(d.Value)
        const k = key(Namespace, d.MetricName, d.Dimensions)
        kept.set(k, [...(kept.get(k) ?? []), { t: Number(d.Timestamp) * 1000, values }])
      }
    },
    /** The percentile queries' answers, and the request without them for moto (none where nothing is left). */
    split(body: Buffer): { own: object[]; forward?: Buffer } | undefined {
      const request = JSON.parse(body.toString('utf8'))
      const isPercentile = (q: any) => /^p\d+(\.\d+)?$/.test(q.MetricStat?.Stat ?? '')
      const asked = (request.MetricDataQueries ?? []).filter(isPercentile)
      if (!asked.length) return undefined
      const [start, end] = [Number(request.StartTime) * 1000, Number(request.EndTime) * 1000]
      const own = asked.map((q: any) => {
        const { Metric, Period, Stat } = q.MetricStat
        const points = kept.get(key(Metric.Namespace, Metric.MetricName, Metric.Dimensions)) ?? []
        const rank = Number(Stat.slice(1)) / 100
        const Timestamps: number[] = []
        const Values: number[] = []
        for (let from = start; from < end; from += Period * 1000) {
          const values = points
            .filter((p) => p.t >= from && p.t < from + Period * 1000)
            .flatMap((p) => p.values)
            .sort((a, b) => a - b)
          if (!values.length) continue
          Timestamps.push(from / 1000)
          Values.push(values[Math.max(0, Math.ceil(rank * values.length) - 1)])
        }
        return { Id: q.Id, Label: `${Metric.MetricName} ${Stat}`, Timestamps, Values, StatusCode: 'Complete' }
      })
      const rest = request.MetricDataQueries.filter((q: any) => !isPercentile(q))
      const forward = rest.length ? Buffer.from(JSON.stringify({ ...request, MetricDataQueries: rest })) : undefined
      return { own, forward }
    },
  }
}

export interface RecoveryPoint {
  RecoveryPointArn: string
  CreationDate: number // epoch seconds, as AWS Backup's JSON has it
  Status: 'COMPLETED' | 'PARTIAL' | 'EXPIRED' | 'DELETING'
  BackupVaultName: string
}

/** What moto 5.2.1 lacks of backups: EFS's PutBackupPolicy ("not implemented"), and AWS Backup's
 * ListRecoveryPointsByResource (no such route). The policies set are answered by DescribeBackupPolicy; the recovery
 * points are the ones a test puts in `recoveryPoints`, as AWS Backup makes them once a day.
 * https://docs.aws.amazon.com/efs/latest/ug/API_PutBackupPolicy.html,
 * https://docs.aws.amazon.com/aws-backup/latest/devguide/API_ListRecoveryPointsByResource.html */
function backupsKept() {
  const policies = new Map<string, string>()
  const recoveryPoints = new Map<string, RecoveryPoint[]>()
  return {
    recoveryPoints,
    forget() {
      policies.clear()
      recoveryPoints.clear()
    },
    answer(method: string, url: URL, body: Buffer): object | undefined {
      const policy = /^\/2015-02-01\/file-systems\/([^/]+)\/backup-policy$/.exec(url.pathname)
      if (policy && method === 'PUT') policies.set(policy[1], JSON.parse(body.toString('utf8')).BackupPolicy.Status)
      if (policy && policies.has(policy[1])) return { BackupPolicy: { Status: policies.get(policy[1]) } }
      const points = /^\/resources\/(.+)\/recovery-points\/?$/.exec(url.pathname)
      if (points && method === 'GET') return { RecoveryPoints: recoveryPoints.get(decodeURIComponent(points[1])) ?? [] }
    },
  }
}

/** moto 5.2.1 gives every DB instance one DbiResourceId; AWS gives each its own ("the AWS Region-unique, immutable
 * identifier for the DB instance"), and a restored instance a new one, which its IAM connect policy must name:
 * each instance's, made from its identifier. https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DBInstance.html */
function ownResourceIds(payload: Buffer): Buffer {
  const text = payload.toString('utf8')
  if (!text.includes('<DbiResourceId>')) return payload
  const own = (block: string) => {
    const id = /<DBInstanceIdentifier>([^<]+)<\/DBInstanceIdentifier>/.exec(block)?.[1]
    if (!id) return block
    const resource = `db-${createHash('sha256').update(id).digest('hex').slice(0, 26).toUpperCase()}`
    return block.replace(/<DbiResourceId>[^<]*<\/DbiResourceId>/, `<DbiResourceId>${resource}</DbiResourceId>`)
  }
  return Buffer.from(text.replace(/<DBInstance>[\s\S]*?<\/DBInstance>/g, own))
}
