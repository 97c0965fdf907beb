// What the deploy tests share: a copy of the project to deploy from, the environment that points deploy.ts at
// moto, and what the seeder answers (moto runs no function code: a test queues the answer).
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs'
import { EC2Client } from '@aws-sdk/client-ec2'
import { EFSClient } from '@aws-sdk/client-efs'
import { IAMClient } from '@aws-sdk/client-iam'
import { LambdaClient } from '@aws-sdk/client-lambda'
import { RDSClient } from '@aws-sdk/client-rds'
import { root } from './cli.ts'
import { handler as seeder, type SeederEvent } from '../seed.ts'

/** A copy of the project, so that a test may change its source and build/ stays out of the repository. */
export function projectCopy(): string {
  const work = mkdtempSync(join(tmpdir(), 'buddy-deploy-'))
  for (const file of ['api.ts', 'db.ts', 'seed.ts', 'deploy.ts', 'fake_db.json', 'package.json'])
    cpSync(join(root, file), join(work, file))
  symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'))
  after(() => rmSync(work, { recursive: true, force: true }))
  return work
}

/** AWS's settings for a command, aimed at `endpoint` with moto's dummy credentials. */
export const awsEnv = (endpoint: string) => ({
  AWS_ENDPOINT_URL: endpoint,
  AWS_ACCESS_KEY_ID: 'testing',
  AWS_SECRET_ACCESS_KEY: 'testing',
  AWS_REGION: 'us-east-1',
  AWS_EC2_METADATA_DISABLED: 'true', // never ask 169.254.169.254 for credentials
  AWS_PROFILE: undefined,
  PG_PASSWORD: undefined,
})

/** The SDK clients a test reads moto's state with. */
export function awsClients(endpoint: string) {
  const config = { endpoint, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } }
  return {
    lambda: new LambdaClient(config),
    iam: new IAMClient(config),
    efs: new EFSClient(config),
    ec2: new EC2Client(config),
    rds: new RDSClient(config),
    logs: new CloudWatchLogsClient(config),
  }
}

/** What the real seeder function (seed.handler) answers to each event, in turn, on one SQLite database seeded as a
 * deployment's is: for the tests to queue, where moto runs no code. */
export async function realSeederAnswers(events: SeederEvent[]): Promise<unknown[]> {
  const dir = mkdtempSync(join(tmpdir(), 'buddy-seeder-'))
  const saved = { DB_LOCATION: process.env.DB_LOCATION, DB_PATH: process.env.DB_PATH }
  Object.assign(process.env, { DB_LOCATION: 'local', DB_PATH: join(dir, 'deployed.db') })
  const log = console.log
  console.log = () => {}
  try {
    const answers = [await seeder()] // the deploy's own invocation: the sample, with no usable password and no staff
    for (const event of events) answers.push(await seeder(event))
    return answers.slice(1)
  } finally {
    console.log = log
    for (const [name, value] of Object.entries(saved))
      value === undefined ? delete process.env[name] : (process.env[name] = value)
    rmSync(dir, { recursive: true, force: true })
  }
}

/** seed.handler's answer, on a new database ('loaded') or on one seeded before. */
export const seederAnswer = (sample = 'loaded') => ({
  statusCode: 200,
  body: JSON.stringify({
    sample,
    loaded_at: '2026-12-01T10:00:00',
    user_count: 8,
    animal_count: 16,
    foster_count: 8,
    adoption_count: 7,
    added:
      sample === 'loaded'
        ? { users: 8, animals: 16, fosters: 8, adoptions: 7 }
        : { users: 0, animals: 0, fosters: 0, adoptions: 0 },
    schema:
      sample === 'loaded'
        ? { from: 0, to: 1, applied: ['1 users, animals, fosters, per-day intake counts'] }
        : { from: 1, to: 1, applied: [] },
    staff: [],
  }),
})
