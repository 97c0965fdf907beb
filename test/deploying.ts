// What the deploy tests share: a copy of the project to deploy from, the environment that points deploy.ts at
// moto, and what the seeder answers (moto runs no function code: a test queues the answer).
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch'
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs'
import { SNSClient } from '@aws-sdk/client-sns'
import { EC2Client } from '@aws-sdk/client-ec2'
import { EFSClient } from '@aws-sdk/client-efs'
import { IAMClient } from '@aws-sdk/client-iam'
import { LambdaClient } from '@aws-sdk/client-lambda'
import { RDSClient } from '@aws-sdk/client-rds'
import { root } from './cli.ts'
import { configFromEnv, openDatabase } from '../db.ts'
import { commonPasswordList, handler as seeder, runSeeder, setUp, type SampleUse, type SeederEvent } from '../seed.ts'

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
    cloudwatch: new CloudWatchClient(config),
    sns: new SNSClient(config),
  }
}

/** Lambda's answer to an invocation whose handler threw: the runtime's error document, with the error's name as its
 * errorType (https://docs.aws.amazon.com/lambda/latest/dg/nodejs-exceptions.html). On AWS it comes with
 * X-Amz-Function-Error: Unhandled, which moto's simple Lambda never sends: the harness adds it (moto.ts). */
export const lambdaError = (error: Error) => ({
  errorType: error.name,
  errorMessage: error.message,
  trace: String(error.stack).split('\n'),
})

/** What the seeder function answers to each task, in turn, as Lambda gives it back: the real seeder code (seed.ts) on
 * one SQLite database, new to the first task; a copy reads another, seeded as a deployment's (or, with `efsUse`
 * local, with the sample's local passwords: rows that differ). For the tests to queue, where moto runs no code. */
export async function realSeederAnswers(events: SeederEvent[], efsUse: SampleUse = 'deployed'): Promise<unknown[]> {
  const dir = mkdtempSync(join(tmpdir(), 'buddy-seeder-'))
  const saved = { DB_LOCATION: process.env.DB_LOCATION, DB_PATH: process.env.DB_PATH }
  Object.assign(process.env, { DB_LOCATION: 'local', DB_PATH: join(dir, 'deployed.db') })
  const efs = { kind: 'sqlite', path: join(dir, 'efs.db'), onNetworkFs: false } as const
  const { log, error } = console
  console.log = console.error = () => {}
  try {
    const file = await openDatabase(efs)
    await setUp(file, efsUse, await commonPasswordList())
    await file.close()
    const answers = []
    for (const event of events) {
      try {
        if (event.from === undefined) answers.push(await seeder(event))
        else {
          // The handler reads the EFS file where DB_PATH is, as the target here: the same code, given the other file.
          const db = await openDatabase(configFromEnv())
          answers.push(await runSeeder(db, event, 'deployed', () => openDatabase(efs)).finally(() => db.close()))
        }
      } catch (e) {
        answers.push(lambdaError(e as Error))
      }
    }
    return answers
  } finally {
    Object.assign(console, { log, error })
    for (const [name, value] of Object.entries(saved))
      value === undefined ? delete process.env[name] : (process.env[name] = value)
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The common passwords deploy.ts sends with a set up and a copy. */
export const commonPasswords = await commonPasswordList()

const [loaded, loadedBefore] = await realSeederAnswers([{ commonPasswords }, { commonPasswords }])
/** The seeder's answer on a new database ('loaded'), and on one it seeded before. */
export const seederAnswer = (sample: 'loaded' | 'loaded before' = 'loaded') =>
  sample === 'loaded' ? loaded : loadedBefore
