// Deploys the buddy system API to AWS Lambda: what the deployment guide has a person do by hand
// (package, role, network, storage, functions, seed), in one command that is safe to run again.
import { createHash, randomBytes } from 'node:crypto'
import { copyFileSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { chalk, echo, minimist, question } from 'zx'
import { build } from 'esbuild'
import { zipSync, type ZipOptions } from 'fflate'
import {
  AddPermissionCommand, CreateFunctionCommand, CreateFunctionUrlConfigCommand, DeleteFunctionCommand,
  DeleteFunctionUrlConfigCommand, GetFunctionCommand, GetFunctionUrlConfigCommand, GetPolicyCommand,
  InvokeCommand, LambdaClient, UpdateFunctionCodeCommand, UpdateFunctionConfigurationCommand,
  type FunctionConfiguration,
} from '@aws-sdk/client-lambda'
import {
  AttachRolePolicyCommand, CreateRoleCommand, DeleteRoleCommand, DetachRolePolicyCommand, GetRoleCommand,
  IAMClient, ListAttachedRolePoliciesCommand,
} from '@aws-sdk/client-iam'
import {
  CreateDBInstanceCommand, CreateDBSubnetGroupCommand, DeleteDBInstanceCommand, DeleteDBSubnetGroupCommand,
  DescribeDBInstancesCommand, DescribeDBSubnetGroupsCommand, RDSClient, type DBInstance,
} from '@aws-sdk/client-rds'
import {
  CreateAccessPointCommand, CreateFileSystemCommand, CreateMountTargetCommand, DeleteAccessPointCommand,
  DeleteFileSystemCommand, DeleteMountTargetCommand, DescribeAccessPointsCommand, DescribeFileSystemsCommand,
  DescribeMountTargetsCommand, EFSClient,
} from '@aws-sdk/client-efs'
import {
  AuthorizeSecurityGroupIngressCommand, CreateSecurityGroupCommand, DeleteSecurityGroupCommand,
  DescribeSecurityGroupsCommand, DescribeSubnetsCommand, DescribeVpcsCommand, EC2Client,
} from '@aws-sdk/client-ec2'
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts'

// Options

const args = minimist(process.argv.slice(2), {
  string: ['region', 'name', 'arch', 'memory', 'timeout', 'subnets', 'security-group'],
  boolean: ['dry-run', 'yes', 'help'],
  alias: { h: 'help', y: 'yes' },
  unknown: (arg) => arg.startsWith('-') ? fail(`unknown option ${arg}`) : true,
})
const USAGE = `usage:
  tsx deploy.ts efs|rds [--region R] [--name buddy-system] [--arch arm64|x86_64] [--memory 1024]
                [--timeout 10] [--subnets subnet-a,subnet-b] [--security-group sg-x] [--dry-run] [--yes]
  tsx deploy.ts destroy efs|rds [--region R] [--name buddy-system] [--yes]
  tsx deploy.ts package`
const [command, target] = args._ as string[]
const scenario = command === 'destroy' ? target : command
const name = args.name ?? 'buddy-system'
const arch = args.arch ?? 'arm64'
const memory = Number(args.memory ?? 1024)
const timeout = Number(args.timeout ?? 10)
const dryRun = args['dry-run'] as boolean
/** Progress and results; under --dry-run on stderr, so that stdout is the script alone. */
const say = (text: string) => (dryRun ? console.error(text) : echo(text))
const yes = args.yes as boolean

if (args.help) echo(USAGE), process.exit(0)
const packageOnly = command === 'package' && args._.length === 1
if (!packageOnly && (!['efs', 'rds'].includes(scenario) || (command === 'destroy') !== (args._.length === 2) || args._.length > 2)) {
  fail(`expected efs, rds, destroy efs, destroy rds or package; got: ${args._.join(' ') || 'nothing'}\n\n${USAGE}`)
}
// The longest derived name, "<name>-lambda-execution-role", must fit IAM's 64 characters; RDS wants a letter first.
if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(name) || name.length > 40) {
  fail(`--name ${name}: use up to 40 lowercase letters, digits and single hyphens, starting with a letter`)
}
if (!['arm64', 'x86_64'].includes(arch)) fail(`--arch ${arch}: use arm64 or x86_64`)
if (!Number.isInteger(memory) || memory < 128 || memory > 10240) fail(`--memory ${args.memory}: use 128 to 10240 (MB)`)
if (!Number.isInteger(timeout) || timeout < 1 || timeout > 900) fail(`--timeout ${args.timeout}: use 1 to 900 (seconds)`)

const names = {
  role: `${name}-lambda-execution-role`,
  api: name,
  seeder: `${name}-db-seeder`,
  securityGroup: name,
  accessPoint: `${name}-lambda`,
  db: name,
}
const TAGS = { app: name }
const tagList = Object.entries(TAGS).map(([Key, Value]) => ({ Key, Value }))
const MANAGED_POLICIES = [
  'service-role/AWSLambdaBasicExecutionRole',
  'service-role/AWSLambdaVPCAccessExecutionRole',
  'AWSXRayDaemonWriteAccess',
  ...(scenario === 'efs' ? ['AmazonElasticFileSystemClientReadWriteAccess'] : []),
]
const MINUTE = 60_000

// AWS calls: sent through the SDK, or with --dry-run printed as the equivalent AWS CLI command.

const config = args.region ? { region: args.region } : {}
const clients = {
  lambda: new LambdaClient(config),
  iam: new IAMClient(config),
  rds: new RDSClient(config),
  efs: new EFSClient(config),
  ec2: new EC2Client(config),
  sts: new STSClient(config),
}
type Service = keyof typeof clients
// Any SDK v3 command: its class name says the operation, `input` its parameters.
type Command = { input: object; constructor: { name: string } }

class StepError extends Error {}

interface SendOptions {
  /** A lookup: --dry-run prints it only with `capture`, and takes "not found" as its answer. */
  lookup?: boolean
  /** --dry-run: the shell variable that keeps a value of the answer, and where the value is in it. */
  capture?: { variable: string; query: string }
  /** Error names that mean "not there": the call answers undefined instead of failing. */
  missing?: string[]
}

async function send<T = any>(service: Service, cmd: Command, options: SendOptions = {}): Promise<T> {
  if (dryRun) return dryRunSend(service, cmd, options) as T
  try {
    return await (clients[service] as unknown as { send(c: Command): Promise<T> }).send(cmd)
  } catch (error) {
    const e = error as Error & { $metadata?: unknown }
    if (options.missing?.includes(e.name)) return undefined as T
    throw new StepError(`${operation(cmd)}: ${e.name}: ${e.message}${hint(e)}`, { cause: error })
  }
}

const operation = (cmd: Command) => cmd.constructor.name.replace(/Command$/, '')

function hint(e: Error): string {
  const text = `${e.name} ${e.message}`
  if (/CredentialsProviderError|Could not load credentials/.test(text)) {
    return '\nNo AWS credentials found: run `aws configure` (or `aws sso login`), or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.'
  }
  if (/Region is missing/.test(text)) return '\nNo region: pass --region, or set AWS_REGION, or a region in your AWS profile.'
  if (/InvalidClientTokenId|UnrecognizedClient|SignatureDoesNotMatch|ExpiredToken/.test(text)) {
    return '\nYour AWS credentials were refused: check or refresh them (`aws sts get-caller-identity` tells).'
  }
  if (/AccessDenied|UnauthorizedOperation|not authorized/.test(text)) {
    return '\nYour credentials lack this permission: ask your account administrator for it, or use a profile that has it.'
  }
  if (/LimitExceeded|Quota|TooMany/.test(text)) {
    return '\nA quota of your account is reached: remove resources you no longer use, or ask AWS for more (Service Quotas console).'
  }
  if (/ENOTFOUND|getaddrinfo|Invalid region|UnknownEndpoint/.test(text)) {
    return '\nThe AWS endpoint cannot be reached: check --region (or AWS_REGION) and your network.'
  }
  return ''
}

// --dry-run: the script that does the same with the AWS CLI. A value only AWS knows is kept in a
// shell variable; inside parameters it stands as @@NAME@@ (a single value) or @@[NAME]@@ (a list).
const dryRunShape = (path: string, value: unknown) => {
  const root: Record<string, unknown> = {}
  let node: any = root
  const keys = path.replace(/\[(\d+)\]/g, '.$1').split('.').filter(Boolean)
  keys.forEach((key, i) => {
    if (i === keys.length - 1) node[key] = value
    else node = node[key] ??= /^\d+$/.test(keys[i + 1]) ? [] : {}
  })
  return root
}

function dryRunSend(service: Service, cmd: Command, options: SendOptions): unknown {
  if (options.lookup && !options.capture) return undefined
  const line = cliCommand(service, cmd)
  if (!options.capture) {
    script(line)
    return {}
  }
  const { variable, query } = options.capture
  script(`${variable}=$(${line} --query ${shellWord(query)} --output text)`)
  return dryRunShape(query.replace(/\[\]$/, ''), query.endsWith('[]') ? `@@[${variable}]@@` : `@@${variable}@@`)
}

const kebab = (s: string) =>
  s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').replace(/([A-Z]+)([A-Z][a-z])/g, '$1-$2').toLowerCase()

function cliCommand(service: Service, cmd: Command): string {
  const words = ['aws', service, kebab(operation(cmd))]
  for (const [key, value] of Object.entries(cmd.input)) {
    if (value === undefined) continue
    if (key === 'ZipFile' || key === 'Code') words.push('--zip-file', 'fileb://build.zip')
    else if (typeof value === 'boolean') words.push(`--${value ? '' : 'no-'}${kebab(key)}`)
    else if (typeof value === 'object') words.push(`--${kebab(key)}`, shellWord(JSON.stringify(value)))
    else words.push(`--${kebab(key)}`, shellWord(String(value)))
  }
  if (operation(cmd) === 'Invoke') words.push('/dev/stdout')
  return words.join(' ')
}

/** One shell word: single-quoted text, with the variables that stand in it expanded. */
function shellWord(text: string): string {
  const lists = text.replace(/\["@@\[(\w+)\]@@"\]|@@\[(\w+)\]@@/g, (_, a, b) => `\u0000"$(json_list "$${a ?? b}")"\u0000`)
  const parts = lists.replace(/@@(\w+)@@/g, '\u0000"${$1}"\u0000').split('\u0000')
  return parts
    .map((part, i) => (i % 2 ? part : part === '' ? '' : /^[\w@%+=:,./-]+$/.test(part) ? part : `'${part.replace(/'/g, `'\\''`)}'`))
    .join('') || "''"
}

const scriptLines: string[] = []
const script = (line: string) => scriptLines.push(line)

// Progress: a line per step with its time; a spinner, with the time so far, for every wait.

const summary = { created: [] as string[], reused: [] as string[], updated: [] as string[], removed: [] as string[] }
let currentStep = 'start'

async function step<T>(title: string, run: () => Promise<T>): Promise<T> {
  currentStep = title
  const started = Date.now()
  if (dryRun) script(`\n# ${title}`)
  const result = await run()
  if (!dryRun) say(`${chalk.green('✔')} ${title} ${chalk.dim(`(${seconds(started)})`)}`)
  return result
}

const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)}s`

/** Polls `check` until it answers a value, showing what it waits for; fails after `limit` ms. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>, limit: number, shell: string): Promise<T> {
  if (dryRun) {
    script(shell)
    return undefined as T
  }
  const started = Date.now()
  const frames = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏'
  let frame = 0
  let lastLine = started
  const show = () => {
    const text = `waiting for ${what} (${Math.round((Date.now() - started) / 1000)}s so far)`
    if (process.stderr.isTTY) process.stderr.write(`\r${chalk.cyan(frames[frame++ % frames.length])} ${text}\x1b[K`)
    else if (Date.now() - lastLine >= 30_000) (lastLine = Date.now()), process.stderr.write(`… ${text}\n`)
  }
  const timer = setInterval(show, 100)
  show()
  try {
    for (let delay = 1000; ; delay = Math.min(delay * 2, 15_000)) {
      const value = await check()
      if (value !== undefined) return value
      if (Date.now() - started > limit) {
        throw new StepError(`gave up waiting for ${what} after ${Math.round(limit / MINUTE)} minutes`)
      }
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
  } finally {
    clearInterval(timer)
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K')
  }
}

function ensureOurs(what: string, tags: Record<string, string | undefined> | undefined) {
  if (tags?.app !== name) {
    throw new StepError(`${what} exists and is not ours (it has no tag app=${name}): pass another --name, or remove it`)
  }
}
const tagMap = (list?: { Key?: string; Value?: string }[]) => Object.fromEntries((list ?? []).map((t) => [t.Key, t.Value]))

function fail(message: string): never {
  say(chalk.red(`✘ ${message}`))
  process.exit(1)
}

// Package: an ESM entry per function (api.mjs, seed.mjs) and the chunks they share, bundled for the
// nodejs24.x runtime, where SQLite is the built-in node:sqlite: no native module, so the same zip
// runs on arm64 and x86_64.

async function packageCode(): Promise<{ zip: Buffer; sha256: string }> {
  const started = Date.now()
  rmSync('build', { recursive: true, force: true })
  await build({
    entryPoints: ['api.ts', 'seed.ts'],
    outdir: 'build',
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    minify: true,
    legalComments: 'none',
    external: ['better-sqlite3'], // db.ts loads it only on a Node older than 24, never on Lambda
    // What is imported on demand (PostgreSQL's client, the seeder's code) goes in chunks of its own,
    // so that a cold start loads only what its first request needs.
    splitting: true,
    chunkNames: 'chunk-[hash]',
    logLevel: 'warning',
  })
  copyFileSync('fake_db.json', 'build/fake_db.json')
  // Same source, same bytes: fixed times and sorted entries, so an unchanged build keeps its CodeSha256.
  const fixed: ZipOptions & { mtime: Date; os: number; attrs: number } = {
    mtime: new Date(2000, 0, 1),
    os: 3,
    attrs: 0o100644 << 16,
    level: 9,
  }
  const files = readdirSync('build').sort()
  const zip = Buffer.from(zipSync(Object.fromEntries(files.map((f) => [f, [readFileSync(`build/${f}`), fixed]]))))
  writeFileSync('build.zip', zip)
  const sizes = ['api.mjs', 'seed.mjs', 'fake_db.json'].map((f) => `${f} ${kb(statSync(`build/${f}`).size)}`).join(', ')
  const chunks = files.filter((f) => f.startsWith('chunk-'))
  const chunkSize = chunks.reduce((sum, f) => sum + statSync(`build/${f}`).size, 0)
  say(`${chalk.green('✔')} package: build.zip ${kb(zip.length)} (${sizes}, ${chunks.length} shared chunks ${kb(chunkSize)}) ${chalk.dim(`(${seconds(started)})`)}`)
  return { zip, sha256: createHash('sha256').update(zip).digest('base64') }
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`

// Deploy

async function deploy() {
  const { zip, sha256 } = await packageCode()
  if (dryRun) {
    script('#!/usr/bin/env bash')
    script(`# What \`tsx deploy.ts ${scenario}\` does, with the AWS CLI. Run it where build.zip is.`)
    script('set -euo pipefail')
    if (args.region) script(`export AWS_DEFAULT_REGION=${shellWord(args.region)}`)
    script('json_list() { local out=; for item in $1; do out+="${out:+,}\\"$item\\""; done; echo "[$out]"; }')
  }

  const account = await step('credentials', async () => {
    const me = await send('sts', new GetCallerIdentityCommand({}), {
      lookup: true,
      capture: { variable: 'ACCOUNT_ID', query: 'Account' },
    })
    const region = dryRun ? args.region ?? 'your default region' : await clients.sts.config.region()
    if (!dryRun) say(`  account ${me.Account}, region ${region}, as ${me.Arn}`)
    return { id: me.Account as string, partition: dryRun ? 'aws' : (me.Arn as string).split(':')[1] }
  })

  if (!dryRun && !yes && process.stdin.isTTY) {
    const answer = await question(`Deploy ${name} (${scenario}) to account ${account.id}? [y/N] `)
    if (!/^y(es)?$/i.test(answer.trim())) fail('stopped: nothing was created')
  }

  const network = await step('network', findNetwork)
  const roleArn = await step('role', () => ensureRole(account.partition))
  const environment: Record<string, string> =
    scenario === 'efs' ? { DB_LOCATION: 'efs' } : await step('database (RDS PostgreSQL)', () => ensureDatabase(network))
  const fileSystem = scenario === 'efs' ? await step('file system (EFS)', () => ensureFileSystem(network)) : undefined

  const url = await step('functions', async () => {
    const jwtKey = await existingVariable(names.api, 'JWT_KEY', 'openssl rand -hex 32', () => randomBytes(32).toString('hex'))
    const common = { roleArn, network, fileSystem, zip, sha256 }
    await ensureFunction({ ...common, name: names.api, handler: 'api.handler', timeout, environment: { ...environment, JWT_KEY: jwtKey } })
    await ensureFunction({ ...common, name: names.seeder, handler: 'seed.handler', timeout: 60, environment })
    return ensureFunctionUrl()
  })

  await step('seed', seedDatabase)

  if (dryRun) {
    script(`\necho "The API: $(aws lambda get-function-url-config --function-name ${names.api} --query FunctionUrl --output text)"`)
    if (scenario === 'rds') script('echo "The database password (keep it in a password manager): $PG_PASSWORD"')
    process.stdout.write(`${scriptLines.join('\n')}\n`)
    return
  }
  say('')
  for (const [what, list] of Object.entries(summary)) if (list.length) say(`${what}: ${list.join(', ')}`)
  say(chalk.bold(`The API is at ${url}`))
  if (generatedPassword) {
    say(chalk.yellow(`The database password, shown this once: ${generatedPassword}`))
    say('Keep it in a password manager: the functions have it, and a later deploy reads it back from them.')
  }
}

interface Network {
  vpcId: string
  subnetIds: string[]
  securityGroupId: string
}

async function findNetwork(): Promise<Network> {
  let vpcId: string
  let subnetIds: string[]
  if (args.subnets) {
    subnetIds = String(args.subnets).split(',').map((s) => s.trim()).filter(Boolean)
    const found = await send('ec2', new DescribeSubnetsCommand({ SubnetIds: subnetIds }), {
      lookup: true,
      capture: { variable: 'VPC_ID', query: 'Subnets[0].VpcId' },
    })
    vpcId = found.Subnets[0].VpcId
    if (dryRun) script(`SUBNET_IDS=${shellWord(subnetIds.join(' '))}`)
    else if (new Set(found.Subnets.map((s: { VpcId: string }) => s.VpcId)).size > 1) {
      throw new StepError(`--subnets ${args.subnets}: the subnets are in more than one VPC`)
    }
  } else {
    const vpcs = await send('ec2', new DescribeVpcsCommand({ Filters: [{ Name: 'is-default', Values: ['true'] }] }), {
      lookup: true,
      capture: { variable: 'VPC_ID', query: 'Vpcs[0].VpcId' },
    })
    vpcId = vpcs.Vpcs?.[0]?.VpcId
    if (!vpcId) {
      throw new StepError('this region has no default VPC: pass --subnets (two or more, in different Availability Zones) and, if you like, --security-group')
    }
    // The default VPC has one default subnet per Availability Zone.
    const subnets = await send('ec2', new DescribeSubnetsCommand({
      Filters: [{ Name: 'vpc-id', Values: [vpcId] }, { Name: 'default-for-az', Values: ['true'] }],
    }), { lookup: true, capture: { variable: 'SUBNET_IDS', query: 'Subnets[].SubnetId' } })
    subnetIds = dryRun ? ['@@[SUBNET_IDS]@@'] : subnets.Subnets.map((s: { SubnetId: string }) => s.SubnetId).sort()
  }
  if (dryRun) script('[ "$(wc -w <<< "$SUBNET_IDS")" -ge 2 ] || { echo "need subnets in two Availability Zones" >&2; exit 1; }')
  else if (subnetIds.length < 2) {
    throw new StepError(`found ${subnetIds.length} subnet(s) in ${vpcId}: Lambda and RDS want two Availability Zones; pass --subnets`)
  }
  const securityGroupId = args['security-group'] ? String(args['security-group']) : await ensureSecurityGroup(vpcId)
  if (!dryRun) say(`  VPC ${vpcId}, subnets ${subnetIds.join(', ')}, security group ${securityGroupId}`)
  return { vpcId, subnetIds, securityGroupId }
}

async function ensureSecurityGroup(vpcId: string): Promise<string> {
  const found = await send('ec2', new DescribeSecurityGroupsCommand({
    Filters: [{ Name: 'vpc-id', Values: [vpcId] }, { Name: 'group-name', Values: [names.securityGroup] }],
  }), { lookup: true })
  const existing = found?.SecurityGroups?.[0]
  if (existing) {
    ensureOurs(`security group ${names.securityGroup}`, tagMap(existing.Tags))
    summary.reused.push(`security group ${existing.GroupId}`)
    return existing.GroupId
  }
  const created = await send('ec2', new CreateSecurityGroupCommand({
    GroupName: names.securityGroup,
    Description: `${name}: Lambda functions, and the EFS or RDS storage they reach`,
    VpcId: vpcId,
    TagSpecifications: [{ ResourceType: 'security-group', Tags: tagList }],
  }), { capture: { variable: 'SG_ID', query: 'GroupId' } })
  // Members of the group reach each other on NFS (EFS) and PostgreSQL (RDS), and nothing else comes in.
  await send('ec2', new AuthorizeSecurityGroupIngressCommand({
    GroupId: created.GroupId,
    IpPermissions: [2049, 5432].map((port) => ({
      IpProtocol: 'tcp', FromPort: port, ToPort: port, UserIdGroupPairs: [{ GroupId: created.GroupId }],
    })),
  }))
  summary.created.push(`security group ${dryRun ? names.securityGroup : created.GroupId}`)
  return created.GroupId
}

async function ensureRole(partition: string): Promise<string> {
  const found = await send('iam', new GetRoleCommand({ RoleName: names.role }), { lookup: true, missing: ['NoSuchEntityException'] })
  let arn: string
  if (found) {
    ensureOurs(`role ${names.role}`, tagMap(found.Role.Tags))
    arn = found.Role.Arn
  } else {
    const created = await send('iam', new CreateRoleCommand({
      RoleName: names.role,
      AssumeRolePolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' }, Action: 'sts:AssumeRole' }],
      }),
      Description: `${name}: runs its Lambda functions`,
      Tags: tagList,
    }), { capture: { variable: 'ROLE_ARN', query: 'Role.Arn' } })
    arn = created.Role.Arn
    summary.created.push(`role ${names.role}`)
  }
  const attached = found
    ? await send('iam', new ListAttachedRolePoliciesCommand({ RoleName: names.role }), { lookup: true })
    : { AttachedPolicies: [] }
  const have = new Set((attached.AttachedPolicies ?? []).map((p: { PolicyArn: string }) => p.PolicyArn))
  for (const policy of MANAGED_POLICIES) {
    const policyArn = `arn:${partition}:iam::aws:policy/${policy}`
    if (have.has(policyArn)) continue
    await send('iam', new AttachRolePolicyCommand({ RoleName: names.role, PolicyArn: policyArn }))
    if (found) summary.updated.push(`role ${names.role}: attached ${policy}`)
  }
  if (found && have.size >= MANAGED_POLICIES.length) summary.reused.push(`role ${names.role}`)
  return arn
}

interface FileSystem {
  accessPointArn: string
}

async function ensureFileSystem(network: Network): Promise<FileSystem> {
  const found = await send('efs', new DescribeFileSystemsCommand({ CreationToken: name }), { lookup: true })
  let fs = found?.FileSystems?.[0]
  if (fs) {
    ensureOurs(`file system ${fs.FileSystemId}`, tagMap(fs.Tags))
    summary.reused.push(`file system ${fs.FileSystemId}`)
  } else {
    // The creation token makes this idempotent: a rerun after an interruption finds the same file system.
    fs = await send('efs', new CreateFileSystemCommand({
      CreationToken: name,
      Encrypted: true,
      PerformanceMode: 'generalPurpose',
      Tags: [{ Key: 'Name', Value: name }, ...tagList],
    }), { capture: { variable: 'FS_ID', query: 'FileSystemId' } })
    summary.created.push(`file system ${dryRun ? name : fs.FileSystemId}`)
  }
  const fsId: string = fs.FileSystemId
  await waitFor(`file system ${fsId} to be available`, async () => {
    const { FileSystems } = await send('efs', new DescribeFileSystemsCommand({ FileSystemId: fsId }))
    return FileSystems?.[0]?.LifeCycleState === 'available' ? true : undefined
  }, 10 * MINUTE, untilShell(`aws efs describe-file-systems --file-system-id "$FS_ID" --query 'FileSystems[0].LifeCycleState' --output text`, 'available'))

  // A mount target in every subnet the functions use, so each can reach the file system.
  const targets = dryRun ? [] : (await send('efs', new DescribeMountTargetsCommand({ FileSystemId: fsId }))).MountTargets
  const covered = new Set(targets.map((t: { SubnetId: string }) => t.SubnetId))
  if (dryRun) script('for SUBNET_ID in $SUBNET_IDS; do')
  for (const subnetId of dryRun ? ['@@SUBNET_ID@@'] : network.subnetIds) {
    if (covered.has(subnetId)) continue
    await send('efs', new CreateMountTargetCommand({
      FileSystemId: fsId, SubnetId: subnetId, SecurityGroups: [network.securityGroupId],
    }))
    summary.created.push(`mount target in ${dryRun ? 'each subnet' : subnetId}`)
  }
  if (dryRun) script('done')
  await waitFor(`mount targets of ${fsId} to be available`, async () => {
    const { MountTargets } = await send('efs', new DescribeMountTargetsCommand({ FileSystemId: fsId }))
    const ready = network.subnetIds.every((s) => MountTargets.some((t: any) => t.SubnetId === s && t.LifeCycleState === 'available'))
    return ready ? true : undefined
  }, 15 * MINUTE, untilShell(`aws efs describe-mount-targets --file-system-id "$FS_ID" --query 'length(MountTargets[?LifeCycleState!=\`available\`])' --output text`, '0'))

  const points = dryRun ? [] : (await send('efs', new DescribeAccessPointsCommand({ FileSystemId: fsId }))).AccessPoints
  let point = points.find((p: any) => tagMap(p.Tags).Name === names.accessPoint)
  if (point) summary.reused.push(`access point ${point.AccessPointId}`)
  else {
    // The guide's settings: files owned by 1000:1000, the root directory created 0777 on first use.
    point = await send('efs', new CreateAccessPointCommand({
      ClientToken: names.accessPoint,
      FileSystemId: fsId,
      PosixUser: { Uid: 1000, Gid: 1000 },
      RootDirectory: { Path: '/mnt/efs', CreationInfo: { OwnerUid: 1000, OwnerGid: 1000, Permissions: '0777' } },
      Tags: [{ Key: 'Name', Value: names.accessPoint }, ...tagList],
    }), { capture: { variable: 'ACCESS_POINT_ARN', query: 'AccessPointArn' } })
    summary.created.push(`access point ${names.accessPoint}`)
  }
  const accessPointId = point.AccessPointId
  await waitFor(`access point ${names.accessPoint} to be available`, async () => {
    const { AccessPoints } = await send('efs', new DescribeAccessPointsCommand({ AccessPointId: accessPointId }))
    return AccessPoints?.[0]?.LifeCycleState === 'available' ? true : undefined
  }, 5 * MINUTE, `# (an access point is available within seconds)`)
  return { accessPointArn: point.AccessPointArn }
}

const untilShell = (query: string, value: string) =>
  `until [ "$(${query})" = ${value} ]; do sleep 5; done`

let generatedPassword: string | undefined

async function ensureDatabase(network: Network): Promise<Record<string, string>> {
  const groups = await send('rds', new DescribeDBSubnetGroupsCommand({ DBSubnetGroupName: name }), {
    lookup: true, missing: ['DBSubnetGroupNotFoundFault'],
  })
  if (groups) summary.reused.push(`DB subnet group ${name}`)
  else {
    await send('rds', new CreateDBSubnetGroupCommand({
      DBSubnetGroupName: name,
      DBSubnetGroupDescription: `${name}: the subnets of its functions`,
      SubnetIds: network.subnetIds,
      Tags: tagList,
    }))
    summary.created.push(`DB subnet group ${name}`)
  }

  const found = await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: names.db }), {
    lookup: true, missing: ['DBInstanceNotFoundFault'],
  })
  let instance: DBInstance | undefined = found?.DBInstances?.[0]
  // The password: PG_PASSWORD, else the one the functions already have, else a new one for a new instance.
  const password = await existingVariable(names.api, 'PG_PASSWORD', "openssl rand -base64 24 | tr -d '/+='", () => {
    if (instance) {
      throw new StepError(`the DB instance ${names.db} exists, and its password is neither in PG_PASSWORD nor in function ${names.api}: set PG_PASSWORD`)
    }
    return (generatedPassword = randomBytes(18).toString('base64url'))
  }, process.env.PG_PASSWORD)
  if (instance) {
    ensureOurs(`DB instance ${names.db}`, tagMap(instance.TagList))
    summary.reused.push(`DB instance ${names.db}`)
  } else {
    await send('rds', new CreateDBInstanceCommand({
      DBInstanceIdentifier: names.db,
      Engine: 'postgres',
      DBInstanceClass: 'db.t4g.micro',
      AllocatedStorage: 20,
      MasterUsername: 'postgres',
      MasterUserPassword: password,
      DBSubnetGroupName: name,
      VpcSecurityGroupIds: [network.securityGroupId],
      PubliclyAccessible: false,
      StorageEncrypted: true,
      Tags: tagList,
    }))
    summary.created.push(`DB instance ${names.db}`)
  }
  instance = await waitFor(`DB instance ${names.db} to be available (new instances take 5 to 15 minutes)`, async () => {
    const { DBInstances } = await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: names.db }))
    return DBInstances?.[0]?.DBInstanceStatus === 'available' ? DBInstances[0] : undefined
  }, 40 * MINUTE, `aws rds wait db-instance-available --db-instance-identifier ${names.db}`)
  const endpoint = dryRun
    ? (await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: names.db }), {
        lookup: true, capture: { variable: 'PG_ENDPOINT', query: 'DBInstances[0].Endpoint.Address' },
      })).DBInstances[0].Endpoint.Address
    : instance!.Endpoint!.Address!
  return {
    DB_LOCATION: 'rds',
    PG_USERNAME: 'postgres',
    PG_PASSWORD: password,
    PG_ENDPOINT: endpoint,
    PG_PORT: String(instance?.Endpoint?.Port ?? 5432),
    // The nodejs24.x runtime carries Amazon's CA bundle, RDS's CAs among them.
    PG_SSLMODE: 'verify-full',
    NODE_EXTRA_CA_CERTS: '/var/runtime/ca-cert.pem',
  }
}

/** A secret the api function already has (so redeploys keep it), else `given`, else a new one. */
async function existingVariable(fn: string, variable: string, shell: string, generate: () => string, given?: string) {
  if (dryRun) {
    script(`${variable}=\${${variable}:-$(${shell})}`)
    return `@@${variable}@@`
  }
  if (given) return given
  const found = await send('lambda', new GetFunctionCommand({ FunctionName: fn }), { missing: ['ResourceNotFoundException'] })
  return found?.Configuration?.Environment?.Variables?.[variable] ?? generate()
}

interface FunctionSpec {
  name: string
  handler: string
  timeout: number
  environment: Record<string, string>
  roleArn: string
  network: Network
  fileSystem?: FileSystem
  zip: Buffer
  sha256: string
}

async function ensureFunction(spec: FunctionSpec) {
  const desired = {
    FunctionName: spec.name,
    Role: spec.roleArn,
    Handler: spec.handler,
    Runtime: 'nodejs24.x' as const,
    MemorySize: memory,
    Timeout: spec.timeout,
    Environment: { Variables: spec.environment },
    VpcConfig: { SubnetIds: spec.network.subnetIds, SecurityGroupIds: [spec.network.securityGroupId] },
    FileSystemConfigs: spec.fileSystem ? [{ Arn: spec.fileSystem.accessPointArn, LocalMountPath: '/mnt/efs' }] : [],
  }
  const found = await send('lambda', new GetFunctionCommand({ FunctionName: spec.name }), {
    lookup: true, missing: ['ResourceNotFoundException'],
  })
  if (!found) {
    await createFunction({ ...desired, Code: { ZipFile: spec.zip }, Architectures: [arch], Tags: TAGS })
    summary.created.push(`function ${spec.name}`)
    return waitForFunction(spec.name, 'active')
  }
  ensureOurs(`function ${spec.name}`, found.Tags)
  const current: FunctionConfiguration = found.Configuration
  await waitForFunction(spec.name, 'updated')
  const changes = configChanges(current, desired)
  if (changes.length) {
    await send('lambda', new UpdateFunctionConfigurationCommand(desired))
    summary.updated.push(`function ${spec.name} (${changes.join(', ')})`)
    await waitForFunction(spec.name, 'updated')
  }
  const archChanged = current.Architectures?.[0] !== arch
  if (current.CodeSha256 !== spec.sha256 || archChanged) {
    await send('lambda', new UpdateFunctionCodeCommand({ FunctionName: spec.name, ZipFile: spec.zip, Architectures: [arch] }))
    summary.updated.push(`function ${spec.name} (code${archChanged ? `, ${arch}` : ''})`)
    await waitForFunction(spec.name, 'updated')
  } else if (!changes.length) summary.reused.push(`function ${spec.name}`)
}

function configChanges(current: FunctionConfiguration, desired: Record<string, any>): string[] {
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b)
  const sorted = (list?: string[]) => [...(list ?? [])].sort()
  const changes: string[] = []
  for (const key of ['Role', 'Handler', 'Runtime', 'MemorySize', 'Timeout'] as const) {
    if (current[key] !== desired[key]) changes.push(key)
  }
  const env = current.Environment?.Variables ?? {}
  const sortedEntries = (o: object) => Object.entries(o).sort(([a], [b]) => a.localeCompare(b))
  if (!same(sortedEntries(env), sortedEntries(desired.Environment.Variables))) changes.push('Environment')
  if (!same(sorted(current.VpcConfig?.SubnetIds), sorted(desired.VpcConfig.SubnetIds)) ||
      !same(sorted(current.VpcConfig?.SecurityGroupIds), sorted(desired.VpcConfig.SecurityGroupIds))) changes.push('VpcConfig')
  const mounts = (current.FileSystemConfigs ?? []).map((f) => `${f.Arn}@${f.LocalMountPath}`)
  if (!same(mounts, desired.FileSystemConfigs.map((f: any) => `${f.Arn}@${f.LocalMountPath}`))) changes.push('FileSystemConfigs')
  return changes
}

// A new role takes seconds to be usable by Lambda: until then CreateFunction fails with one of these.
// https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html
const ROLE_NOT_READY = /cannot be assumed by Lambda|does not have permissions to call/

async function createFunction(input: ConstructorParameters<typeof CreateFunctionCommand>[0]) {
  if (dryRun) {
    script(`until ${cliCommand('lambda', new CreateFunctionCommand(input))} > /dev/null; do`)
    script('  echo "waiting for the new role to be usable by Lambda"; sleep 5')
    script('done')
    return
  }
  let lastError: Error | undefined
  await waitFor(`role ${names.role} to be usable by Lambda`, async () => {
    try {
      return await send('lambda', new CreateFunctionCommand(input))
    } catch (error) {
      if (!ROLE_NOT_READY.test((error as Error).message)) throw error
      lastError = error as Error
      return undefined
    }
  }, 3 * MINUTE, '').catch((error) => {
    throw lastError ? new StepError(`${(error as Error).message}; AWS still says: ${lastError.message}`) : error
  })
}

/** Waits until the function can take the next change: an update in progress fails it with ResourceConflictException. */
async function waitForFunction(fn: string, state: 'active' | 'updated') {
  await waitFor(`function ${fn} to be ${state}`, async () => {
    const { Configuration: c } = await send('lambda', new GetFunctionCommand({ FunctionName: fn }))
    if (c.State === 'Failed' || c.LastUpdateStatus === 'Failed') {
      throw new StepError(`function ${fn} failed: ${c.StateReason ?? c.LastUpdateStatusReason}`)
    }
    return c.State === 'Active' && (state === 'active' || c.LastUpdateStatus !== 'InProgress') ? true : undefined
  }, 10 * MINUTE, `aws lambda wait function-${state}-v2 --function-name ${fn}`)
}

// A public URL: AuthType NONE needs both permissions since October 2025, or every request gets 403.
// https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html
async function ensureFunctionUrl(): Promise<string> {
  const found = await send('lambda', new GetFunctionUrlConfigCommand({ FunctionName: names.api }), {
    lookup: true, missing: ['ResourceNotFoundException'],
  })
  let url = found?.FunctionUrl
  if (url) summary.reused.push('function URL')
  else {
    url = (await send('lambda', new CreateFunctionUrlConfigCommand({ FunctionName: names.api, AuthType: 'NONE' }))).FunctionUrl
    summary.created.push('function URL')
  }
  const policy = await send('lambda', new GetPolicyCommand({ FunctionName: names.api }), {
    lookup: true, missing: ['ResourceNotFoundException'],
  })
  const sids = new Set((policy ? JSON.parse(policy.Policy).Statement : []).map((s: { Sid: string }) => s.Sid))
  const permissions = [
    { StatementId: 'FunctionURLAllowPublicAccess', Action: 'lambda:InvokeFunctionUrl', FunctionUrlAuthType: 'NONE' as const },
    { StatementId: 'FunctionURLInvokeAllowPublicAccess', Action: 'lambda:InvokeFunction', InvokedViaFunctionUrl: true },
  ]
  for (const permission of permissions) {
    if (sids.has(permission.StatementId)) continue
    await send('lambda', new AddPermissionCommand({ FunctionName: names.api, Principal: '*', ...permission }))
    summary.created.push(`permission ${permission.Action}`)
  }
  return url
}

async function seedDatabase() {
  const result = await send('lambda', new InvokeCommand({ FunctionName: names.seeder }))
  if (dryRun) return
  const text = Buffer.from(result.Payload ?? []).toString('utf8')
  if (result.FunctionError) throw new StepError(`the seeder failed (${result.FunctionError}): ${text}`)
  let answer: { statusCode?: number; body?: string } | undefined
  try {
    answer = JSON.parse(text)
  } catch {}
  if (answer?.statusCode === 200) say(`  seeded: ${answer.body}`)
  else if (answer?.statusCode) throw new StepError(`the seeder answered ${answer.statusCode}: ${answer.body}`)
  else say(chalk.yellow(`  the seeder answered something else than its counts: ${text}`))
}

// Destroy

async function destroy() {
  const started = Date.now()
  const me = await step('credentials', () => send('sts', new GetCallerIdentityCommand({})))
  const lost = scenario === 'rds' ? 'the PostgreSQL instance and every record in it (no final snapshot)' : 'the EFS file system and the SQLite database on it'
  if (!yes) {
    if (!process.stdin.isTTY) fail('destroy asks before it deletes anything: pass --yes to confirm without a prompt')
    say(`This deletes ${name}'s functions, their URL and role, the security group, and ${lost}, in account ${me.Account}.`)
    const answer = await question(`Type ${name} to confirm: `)
    if (answer.trim() !== name) fail('stopped: nothing was deleted')
  }

  await step('function URL and functions', async () => {
    await send('lambda', new DeleteFunctionUrlConfigCommand({ FunctionName: names.api }), { missing: ['ResourceNotFoundException'] })
    for (const fn of [names.api, names.seeder]) {
      const found = await send('lambda', new GetFunctionCommand({ FunctionName: fn }), { missing: ['ResourceNotFoundException'] })
      if (!found) continue
      ensureOurs(`function ${fn}`, found.Tags)
      await send('lambda', new DeleteFunctionCommand({ FunctionName: fn }))
      summary.removed.push(`function ${fn}`)
    }
  })

  await step('role', async () => {
    const found = await send('iam', new GetRoleCommand({ RoleName: names.role }), { missing: ['NoSuchEntityException'] })
    if (!found) return
    ensureOurs(`role ${names.role}`, tagMap(found.Role.Tags))
    const { AttachedPolicies } = await send('iam', new ListAttachedRolePoliciesCommand({ RoleName: names.role }))
    for (const { PolicyArn } of AttachedPolicies ?? []) {
      await send('iam', new DetachRolePolicyCommand({ RoleName: names.role, PolicyArn }))
    }
    await send('iam', new DeleteRoleCommand({ RoleName: names.role }))
    summary.removed.push(`role ${names.role}`)
  })

  if (scenario === 'efs') await step('file system', destroyFileSystem)
  else await step('database', destroyDatabase)
  await step('security group', destroySecurityGroup)

  say('')
  say(summary.removed.length ? `removed: ${summary.removed.join(', ')}` : 'nothing to remove: it was all gone already')
  say(chalk.dim(`(${seconds(started)})`))
}

async function destroyFileSystem() {
  const { FileSystems } = await send('efs', new DescribeFileSystemsCommand({ CreationToken: name }))
  const fs = FileSystems?.[0]
  if (!fs) return
  ensureOurs(`file system ${fs.FileSystemId}`, tagMap(fs.Tags))
  const fsId = fs.FileSystemId
  const { AccessPoints } = await send('efs', new DescribeAccessPointsCommand({ FileSystemId: fsId }))
  for (const point of AccessPoints ?? []) {
    await send('efs', new DeleteAccessPointCommand({ AccessPointId: point.AccessPointId }))
    summary.removed.push(`access point ${point.AccessPointId}`)
  }
  const { MountTargets } = await send('efs', new DescribeMountTargetsCommand({ FileSystemId: fsId }))
  for (const target of MountTargets ?? []) {
    await send('efs', new DeleteMountTargetCommand({ MountTargetId: target.MountTargetId }))
    summary.removed.push(`mount target ${target.MountTargetId}`)
  }
  await waitFor(`mount targets of ${fsId} to be deleted`, async () => {
    const { MountTargets: left } = await send('efs', new DescribeMountTargetsCommand({ FileSystemId: fsId }))
    return left.length === 0 ? true : undefined
  }, 15 * MINUTE, '')
  await send('efs', new DeleteFileSystemCommand({ FileSystemId: fsId }))
  summary.removed.push(`file system ${fsId}`)
}

async function destroyDatabase() {
  const found = await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: names.db }), { missing: ['DBInstanceNotFoundFault'] })
  const instance = found?.DBInstances?.[0]
  if (instance) {
    ensureOurs(`DB instance ${names.db}`, tagMap(instance.TagList))
    if (instance.DBInstanceStatus !== 'deleting') {
      await send('rds', new DeleteDBInstanceCommand({
        DBInstanceIdentifier: names.db, SkipFinalSnapshot: true, DeleteAutomatedBackups: true,
      }))
    }
    await waitFor(`DB instance ${names.db} to be deleted`, async () => {
      const left = await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: names.db }), { missing: ['DBInstanceNotFoundFault'] })
      return left ? undefined : true
    }, 40 * MINUTE, '')
    summary.removed.push(`DB instance ${names.db}`)
  }
  const group = await send('rds', new DescribeDBSubnetGroupsCommand({ DBSubnetGroupName: name }), { missing: ['DBSubnetGroupNotFoundFault'] })
  if (group) {
    await send('rds', new DeleteDBSubnetGroupCommand({ DBSubnetGroupName: name }))
    summary.removed.push(`DB subnet group ${name}`)
  }
}

// AWS releases a deleted function's VPC network interfaces in minutes, sometimes over half an
// hour; until then the security group is in use (DependencyViolation).
// https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html
async function destroySecurityGroup() {
  if (args['security-group']) return
  const { SecurityGroups } = await send('ec2', new DescribeSecurityGroupsCommand({
    Filters: [{ Name: 'group-name', Values: [names.securityGroup] }, { Name: 'tag:app', Values: [name] }],
  }))
  for (const group of SecurityGroups ?? []) {
    const deleted = await waitFor(`security group ${group.GroupId} to be released by the functions' network interfaces`, async () => {
      const result = await send('ec2', new DeleteSecurityGroupCommand({ GroupId: group.GroupId })).catch((error: Error) => {
        if (/DependencyViolation/.test(error.message)) return undefined
        throw error
      })
      return result === undefined ? undefined : true
    }, 45 * MINUTE, '').catch((error: Error) => {
      if (!/gave up waiting/.test(error.message)) throw error
      say(chalk.yellow(`Left: security group ${group.GroupId}, still in use by network interfaces AWS has not released yet.`))
      say(chalk.yellow(`Everything else is removed. Run \`tsx deploy.ts destroy ${scenario} --yes\` again later to finish.`))
      process.exitCode = 1
      return false
    })
    if (deleted) summary.removed.push(`security group ${group.GroupId}`)
  }
}

// Run

process.once('SIGINT', () => {
  say(chalk.yellow(`\nInterrupted during "${currentStep}". Run the same command again to finish, or \`tsx deploy.ts destroy ${scenario}\` to remove what was made.`))
  process.exit(130)
})

try {
  if (packageOnly) await packageCode()
  else if (command === 'destroy') await destroy()
  else await deploy()
} catch (error) {
  if (!(error instanceof StepError)) throw error
  fail(`${currentStep} failed: ${error.message}`)
}
