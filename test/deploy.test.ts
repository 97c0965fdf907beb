// deploy.ts end to end against moto_server on 127.0.0.1 (no real AWS here), and its package
// unzipped and run under Node 24 as the nodejs24.x runtime would. With CI=true nothing is skipped.
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { X509Certificate } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, beforeEach, describe, it } from 'node:test'
import { unzipSync, zipSync } from 'fflate'
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateNetworkInterfaceCommand,
  CreateSecurityGroupCommand,
  CreateSubnetCommand,
  DeleteNetworkInterfaceCommand,
  DeleteSubnetCommand,
  DeleteVpcCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  RevokeSecurityGroupIngressCommand,
} from '@aws-sdk/client-ec2'
import {
  CreateLogStreamCommand,
  DeleteLogGroupCommand,
  DescribeLogGroupsCommand,
  DescribeMetricFiltersCommand,
  ListTagsForResourceCommand,
  PutLogEventsCommand,
} from '@aws-sdk/client-cloudwatch-logs'
import {
  CreateFileSystemCommand,
  DescribeAccessPointsCommand,
  DescribeBackupPolicyCommand,
  DescribeFileSystemsCommand,
  DescribeMountTargetsCommand,
} from '@aws-sdk/client-efs'
import {
  CreateRoleCommand,
  DeleteRolePermissionsBoundaryCommand,
  GetPolicyCommand as GetManagedPolicyCommand,
  GetPolicyVersionCommand,
  GetRoleCommand,
  AttachRolePolicyCommand,
  GetRolePolicyCommand,
  ListRolePoliciesCommand,
  ListAttachedRolePoliciesCommand,
} from '@aws-sdk/client-iam'
import {
  CreateFunctionCommand,
  DeleteFunctionCommand,
  DeleteFunctionConcurrencyCommand,
  GetAliasCommand,
  GetFunctionCommand,
  GetFunctionConcurrencyCommand,
  DeleteFunctionUrlConfigCommand,
  GetFunctionUrlConfigCommand,
  GetPolicyCommand,
  ListFunctionsCommand,
  ListVersionsByFunctionCommand,
  PublishVersionCommand,
  PutFunctionConcurrencyCommand,
  UpdateAliasCommand,
  UpdateFunctionConfigurationCommand,
} from '@aws-sdk/client-lambda'
import { DeleteAccessPointCommand } from '@aws-sdk/client-efs'
import {
  CreateDBSnapshotCommand,
  DescribeDBInstancesCommand,
  DescribeDBSnapshotsCommand,
  ModifyDBInstanceCommand,
  StopDBInstanceCommand,
} from '@aws-sdk/client-rds'
import { DescribeAlarmsCommand, PutMetricDataCommand, type MetricDatum } from '@aws-sdk/client-cloudwatch'
import { ListSubscriptionsByTopicCommand, ListTopicsCommand } from '@aws-sdk/client-sns'
import { run } from './cli.ts'
import { changes, operationOf, startMoto, startProxy, type ProxyOptions } from './moto.ts'
import { startPostgres } from './postgres-server.ts'
import {
  awsClients,
  awsEnv,
  commonPasswords,
  lambdaError,
  projectCopy,
  realSeederAnswers,
  seederAnswer,
} from './deploying.ts'
import { NeedsMaster, runSeeder, setUp, TokenRefused } from '../seed.ts'
import {
  configFromEnv,
  createAnimal,
  createUser,
  NO_PASSWORD,
  openDatabase,
  SCHEMA_VERSION,
  type Database,
} from '../db.ts'

const moto = await startMoto()
if (typeof moto === 'string' && process.env.CI === 'true')
  throw new Error(`CI=true and the deploy tests cannot run: ${moto}`)

const work = projectCopy()
const aws = awsEnv

async function deploy(endpoint: string, ...args: string[]) {
  const child = run('deploy.ts', aws(endpoint), args, work)
  const code = await child.exited
  return { code, output: child.output() }
}

describe('deploy.ts against moto', { skip: typeof moto === 'string' ? moto : false }, () => {
  if (typeof moto === 'string') return
  const { lambda, iam, efs, ec2, rds, logs, cloudwatch, sns } = awsClients(moto.endpoint)
  after(() => moto.stop())
  beforeEach(() => moto.reset())
  /** Runs a script of deploy.ts --dry-run with the AWS CLI against moto. The AWS CLI v1 of this machine sends rds
   * commands to rds.amazonaws.com whatever AWS_ENDPOINT_URL says: an `aws` first on PATH passes moto's endpoint as
   * --endpoint-url, which every version takes. */
  const bash = (file: string, { oldCli = false } = {}) => {
    const bin = join(work, 'bin')
    mkdirSync(bin, { recursive: true })
    const realAws = execFileSync('sh', ['-c', 'command -v aws'], { encoding: 'utf8' }).trim()
    // An AWS CLI from before October 2025, as far as the script can tell: it does not know that option.
    const refuse = oldCli
      ? `case "$*" in *--invoked-via-function-url*) echo 'Unknown options' >&2; exit 252;; esac\n`
      : ''
    writeFileSync(join(bin, 'aws'), `#!/bin/sh\n${refuse}exec ${realAws} --endpoint-url "$AWS_ENDPOINT_URL" "$@"\n`, {
      mode: 0o755,
    })
    const env = { ...process.env, ...aws(moto.endpoint), PATH: `${bin}:${process.env.PATH}` } as NodeJS.ProcessEnv
    return new Promise<{ code: number | null; output: string }>((resolve) => {
      execFile('bash', [file], { cwd: work, env, timeout: 120_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, output: stdout + stderr }),
      )
    })
  }

  /** Queues what the real seeder answers to `runs` deploys: the sample loaded by the first, then loaded before. */
  const seeding = (runs: number) =>
    moto.answerInvocations(Array.from({ length: runs }, (_, i) => seederAnswer(i ? 'loaded before' : 'loaded')))

  /** What a `status` invokes, answered: the API's GET /greet, and the seeder's staff list (the real code's answer). */
  const answerStatus = async () =>
    moto.answerInvocations([
      { statusCode: 200, headers: {}, body: '{"greeting":"hello to nobody"}' },
      ...(await realSeederAnswers([{}, { staff: {} }])).slice(1),
    ])
  const fn = (name: string) => lambda.send(new GetFunctionCommand({ FunctionName: name }))
  const securityGroup = async () =>
    (await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'group-name', Values: ['buddy-system'] }] })))
      .SecurityGroups ?? []
  const createdFunctions = () =>
    moto
      .requests()
      .filter((r) => operationOf(r) === 'POST /2015-03-31/functions')
      .map((r) => JSON.parse(r.body))

  async function assertFunctions(environment: (vars: Record<string, string>) => void) {
    const [group] = await securityGroup()
    for (const [name, handler, timeout] of [
      ['buddy-system', 'api.handler', 10],
      ['buddy-system-db-seeder', 'seed.handler', 60],
    ] as const) {
      const { Configuration: c, Tags } = await fn(name)
      assert.equal(c?.Runtime, 'nodejs24.x')
      assert.equal(c?.Handler, handler)
      assert.deepEqual(c?.Architectures, ['arm64'])
      assert.equal(c?.MemorySize, 1024)
      assert.equal(c?.Timeout, timeout)
      assert.equal(c?.Role, 'arn:aws:iam::123456789012:role/buddy-system-lambda-execution-role')
      assert.ok((c?.VpcConfig?.SubnetIds?.length ?? 0) >= 2)
      assert.deepEqual(c?.VpcConfig?.SecurityGroupIds, [group.GroupId])
      assert.deepEqual(Tags, { app: 'buddy-system' })
      environment(c?.Environment?.Variables ?? {})
    }
    const jwt = (await fn('buddy-system')).Configuration?.Environment?.Variables?.JWT_KEY
    assert.match(jwt ?? '', /^[0-9a-f]{64}$/)
    assert.equal((await fn('buddy-system-db-seeder')).Configuration?.Environment?.Variables?.JWT_KEY, undefined)
  }

  async function assertCommon(policies: string[]) {
    const role = await iam.send(new GetRoleCommand({ RoleName: 'buddy-system-lambda-execution-role' }))
    const trust = JSON.parse(decodeURIComponent(role.Role!.AssumeRolePolicyDocument!))
    assert.deepEqual(trust.Statement[0].Principal, { Service: 'lambda.amazonaws.com' })
    assert.deepEqual(role.Role?.Tags, [{ Key: 'app', Value: 'buddy-system' }])
    const attached = await iam.send(
      new ListAttachedRolePoliciesCommand({ RoleName: 'buddy-system-lambda-execution-role' }),
    )
    assert.deepEqual(attached.AttachedPolicies?.map((p) => p.PolicyName).sort(), policies.sort())

    const [group] = await securityGroup()
    assert.deepEqual(group.Tags, [{ Key: 'app', Value: 'buddy-system' }])
    const inbound = group.IpPermissions?.map((p) => [p.FromPort, p.UserIdGroupPairs?.[0]?.GroupId])
    assert.deepEqual(inbound?.sort(), [
      [2049, group.GroupId],
      [5432, group.GroupId],
    ])

    const url = await lambda.send(new GetFunctionUrlConfigCommand({ FunctionName: 'buddy-system' }))
    assert.equal(url.AuthType, 'NONE')
    const policy = JSON.parse((await lambda.send(new GetPolicyCommand({ FunctionName: 'buddy-system' }))).Policy!)
    const statements = policy.Statement.map((s: any) => [
      s.Action,
      s.Principal,
      s.FunctionUrlAuthType ?? s.InvokedViaFunctionUrl,
    ])
    assert.deepEqual(statements.sort(), [
      ['lambda:InvokeFunction', '*', true],
      ['lambda:InvokeFunctionUrl', '*', 'NONE'],
    ])
    return url.FunctionUrl!
  }

  const logGroup = async (group: string) =>
    (await logs.send(new DescribeLogGroupsCommand({ logGroupNamePrefix: group }))).logGroups?.find(
      (g) => g.logGroupName === group,
    )
  const reserved = async () =>
    (await lambda.send(new GetFunctionConcurrencyCommand({ FunctionName: 'buddy-system' })))
      .ReservedConcurrentExecutions
  /** AWS Backup's first daily recovery point of each file system (moto makes none: see backupsKept in moto.ts). */
  const backedUp = async () => {
    for (const fs of (await efs.send(new DescribeFileSystemsCommand({}))).FileSystems ?? []) {
      moto.recoveryPoints.set(fs.FileSystemArn!, [
        {
          RecoveryPointArn: `arn:aws:backup:us-east-1:123456789012:recovery-point:${fs.FileSystemId}-1`,
          CreationDate: Math.floor(Date.now() / 1000) - 3600,
          Status: 'COMPLETED',
          BackupVaultName: 'aws/efs/automatic-backup-vault',
        },
      ])
    }
  }
  /** The operations of the recorded requests, in order, that match `pattern`. */
  const sent = (pattern: RegExp) =>
    moto
      .requests()
      .map(operationOf)
      .filter((op) => pattern.test(op))

  it('deploys the efs scenario: role, network, file system, logs, functions, concurrency, URL, seed', async () => {
    await moto.answerInvocations([seederAnswer()])
    const { code, output } = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(code, 0, output)
    const url = await assertCommon(['AWSLambdaVPCAccessExecutionRole'])
    assert.match(output, new RegExp(`The API is at ${url}`))
    await assertFunctions((vars) => {
      assert.equal(vars.DB_LOCATION, 'efs')
      assert.equal(vars.CORS_ORIGINS, undefined, 'no --cors-origins: the API on Lambda allows no cross-origin calls')
    })
    const waits = await Promise.all(
      ['buddy-system', 'buddy-system-db-seeder'].map(
        async (f) => (await fn(f)).Configuration?.Environment?.Variables?.DB_WAIT_MS,
      ),
    )
    assert.deepEqual(waits, ['3333', '20000'], "a third of each function's timeout")

    const { FileSystems: [fs] = [] } = await efs.send(new DescribeFileSystemsCommand({ CreationToken: 'buddy-system' }))
    assert.equal(fs.Encrypted, true)
    assert.deepEqual(
      fs.Tags?.find((t) => t.Key === 'app'),
      { Key: 'app', Value: 'buddy-system' },
    )
    const { MountTargets = [] } = await efs.send(new DescribeMountTargetsCommand({ FileSystemId: fs.FileSystemId }))
    const subnets = (await fn('buddy-system')).Configuration?.VpcConfig?.SubnetIds ?? []
    const { Subnets = [] } = await ec2.send(new DescribeSubnetsCommand({ SubnetIds: subnets }))
    const zones = new Set(Subnets.map((s) => s.AvailabilityZone))
    assert.ok(zones.size >= 2)
    assert.deepEqual(
      MountTargets.map((t) => t.AvailabilityZoneName).sort(),
      [...zones].sort(),
      'one mount target per zone',
    )
    const { AccessPoints: [point] = [] } = await efs.send(
      new DescribeAccessPointsCommand({ FileSystemId: fs.FileSystemId }),
    )
    assert.deepEqual(point.PosixUser, { Uid: 1000, Gid: 1000 })
    assert.deepEqual(point.RootDirectory?.CreationInfo, { OwnerUid: 1000, OwnerGid: 1000, Permissions: '0777' })
    for (const created of createdFunctions()) {
      assert.deepEqual(created.FileSystemConfigs, [{ Arn: point.AccessPointArn, LocalMountPath: '/mnt/efs' }])
    }
    // The role mounts this file system, through this access point, and no other (issue 26).
    const { PolicyDocument } = await iam.send(
      new GetRolePolicyCommand({ RoleName: 'buddy-system-lambda-execution-role', PolicyName: 'efs-client' }),
    )
    assert.deepEqual(JSON.parse(decodeURIComponent(PolicyDocument!)).Statement, [
      {
        Effect: 'Allow',
        Action: ['elasticfilesystem:ClientMount', 'elasticfilesystem:ClientWrite'],
        Resource: `arn:aws:elasticfilesystem:us-east-1:123456789012:file-system/${fs.FileSystemId}`,
        Condition: { StringEquals: { 'elasticfilesystem:AccessPointArn': point.AccessPointArn } },
      },
    ])
    for (const name of ['buddy-system', 'buddy-system-db-seeder']) {
      const group = await logGroup(`/aws/lambda/${name}`)
      assert.equal(group?.retentionInDays, 14, `log group of ${name}`)
      const { tags } = await logs.send(new ListTagsForResourceCommand({ resourceArn: group!.arn!.replace(/:\*$/, '') }))
      assert.deepEqual(tags, { app: 'buddy-system' })
    }
    // Each log group before its function: the function's first lines are kept no longer than the retention.
    const order = sent(/^(CreateLogGroup|POST \/2015-03-31\/functions)$/)
    assert.deepEqual(order, [
      'CreateLogGroup',
      'POST /2015-03-31/functions',
      'CreateLogGroup',
      'POST /2015-03-31/functions',
    ])
    assert.equal(await reserved(), 10, 'SQLite on EFS: 10 containers at most')
    for (const line of [
      'region',
      'package',
      'credentials',
      'network',
      'role',
      'file system (EFS)',
      'functions',
      'database schema and sample data',
      'release',
      'URL',
    ]) {
      assert.match(output, new RegExp(`✔ ${line.replace(/[()]/g, '\\$&')}.* \\(\\d+\\.\\ds\\)`))
    }
    assert.match(
      output,
      /created: security group sg-\w+, policy buddy-system-functions-boundary, role buddy-system-lambda-execution-role, file system fs-\w+, mount target in us-east-1a \(subnet-\w+\), mount target in us-east-1b \(subnet-\w+\)/,
    )
    assert.match(output, /log group \/aws\/lambda\/buddy-system, function buddy-system, .*concurrency 10/)
    assert.match(
      output,
      /schema 0 → \d+ \(applied 1 users, animals, fosters, per-day intake counts; .*\); added 8 users, 16 animals, \d+ fosters, \d+ adoptions; no staff yet/,
    )
  })

  it('creates nothing and uploads no code when run again, and keeps JWT_KEY', async () => {
    await seeding(2)
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
    const key = (await fn('buddy-system')).Configuration?.Environment?.Variables?.JWT_KEY
    const before = moto.requests().length
    const again = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(again.code, 0, again.output)
    // Nothing: moto's own gap (it forgets FileSystemConfigs) is filled in front of it (moto.ts).
    assert.deepEqual(changes(moto.requests().slice(before)), [])
    assert.doesNotMatch(again.output, /created:/)
    assert.match(again.output, /reused: security group .*role buddy-system-lambda-execution-role, file system fs-\w+/)
    assert.equal((await fn('buddy-system')).Configuration?.Environment?.Variables?.JWT_KEY, key)
  })

  it("takes off an earlier deploy's managed policies: the VPC policy covers the logs, and the file system has its own", async () => {
    await seeding(2)
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
    const role = 'buddy-system-lambda-execution-role'
    for (const policy of [
      'service-role/AWSLambdaBasicExecutionRole',
      'AWSXRayDaemonWriteAccess',
      'AmazonElasticFileSystemClientReadWriteAccess',
    ])
      await iam.send(new AttachRolePolicyCommand({ RoleName: role, PolicyArn: `arn:aws:iam::aws:policy/${policy}` }))
    // A role from before permissions boundaries: it gets one.
    await iam.send(new DeleteRolePermissionsBoundaryCommand({ RoleName: role }))
    const { code, output } = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(code, 0, output)
    assert.match(
      output,
      /updated: role buddy-system-lambda-execution-role: permissions boundary, detached service-role\/AWSLambdaBasicExecutionRole, detached AWSXRayDaemonWriteAccess, detached AmazonElasticFileSystemClientReadWriteAccess/,
    )
    const boundary = 'arn:aws:iam::123456789012:policy/buddy-system-functions-boundary'
    const { Role } = await iam.send(new GetRoleCommand({ RoleName: role }))
    assert.equal(Role?.PermissionsBoundary?.PermissionsBoundaryArn, boundary)
    // The most the functions may do, whatever policy they get: their network interfaces, logs and data.
    const { Policy } = await iam.send(new GetManagedPolicyCommand({ PolicyArn: boundary }))
    const { PolicyVersion } = await iam.send(
      new GetPolicyVersionCommand({ PolicyArn: boundary, VersionId: Policy!.DefaultVersionId }),
    )
    const document = JSON.parse(decodeURIComponent(PolicyVersion!.Document!))
    assert.deepEqual(
      document.Statement.map((s: { Sid: string; Action: string[] }) => [s.Sid, s.Action.length]),
      [
        ['NetworkInterfaces', 6],
        ['Logs', 3],
        ['Data', 3],
      ],
    )
    const { AttachedPolicies = [] } = await iam.send(new ListAttachedRolePoliciesCommand({ RoleName: role }))
    assert.deepEqual(
      AttachedPolicies.map((p) => p.PolicyName),
      ['AWSLambdaVPCAccessExecutionRole'],
    )
  })

  it("goes through Lambda's function states: a failed update is repaired, a failed function made again, an Inactive seeder woken", async () => {
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
    const api = 'GET /2015-03-31/functions/buddy-system'
    const seeder = 'GET /2015-03-31/functions/buddy-system-db-seeder'
    const through = async (options: ProxyOptions, ...flags: string[]) => {
      const proxy = await startProxy(moto.endpoint, options)
      await seeding(1)
      const result = await deploy(proxy.endpoint, 'efs', '--yes', ...flags)
      await proxy.close()
      assert.equal(result.code, 0, result.output)
      return { ...result, calls: proxy.calls }
    }

    // The API's last update failed (a subnet out of addresses): AWS keeps its previous configuration live, and
    // shows Failed until the next update, which this deploy makes.
    const update = 'PUT /2015-03-31/functions/buddy-system/configuration'
    const repaired = await through(
      {
        amend(op, answer, before) {
          if (op === api && !before.includes(update))
            Object.assign(answer.Configuration, {
              LastUpdateStatus: 'Failed',
              LastUpdateStatusReason: 'The subnet has no free addresses',
            })
        },
      },
      '--memory',
      '2048',
    )
    assert.ok(repaired.calls.includes(update), repaired.output)
    assert.equal((await fn('buddy-system')).Configuration?.MemorySize, 2048)

    // The seeder's creation failed: it is deleted and made again.
    const remade = await through({
      amend(op, answer, before) {
        if (op === seeder && !before.includes('DELETE /2015-03-31/functions/buddy-system-db-seeder'))
          Object.assign(answer.Configuration, { State: 'Failed', StateReason: 'Lambda could not make its interfaces' })
      },
    })
    assert.match(
      remade.output,
      /function buddy-system-db-seeder failed to be made \(Lambda could not make its interfaces\): making it again/,
    )
    assert.ok(remade.calls.includes('POST /2015-03-31/functions'), 'made again')

    // Weeks idle, the seeder is Inactive: the first invoke is refused and wakes it; the deploy invokes it again.
    let refused = 0
    const woken = await through({
      refuse: (op) =>
        op.endsWith('/functions/buddy-system-db-seeder/invocations') && refused++ === 0
          ? {
              type: 'ResourceConflictException',
              message:
                'The operation cannot be performed at this time. The function is currently in the following state: Inactive',
            }
          : undefined,
      amend(op, answer) {
        if (op === seeder && refused === 0) Object.assign(answer.Configuration, { State: 'Inactive' })
      },
    })
    assert.equal(woken.calls.filter((op) => op.endsWith('/functions/buddy-system-db-seeder/invocations')).length, 2)
    assert.match(woken.output, /database schema and sample data/)
  })

  it('uploads changed code once to each function, and not again', async () => {
    await seeding(3)
    assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
    const api = join(work, 'api.ts')
    const source = readFileSync(api, 'utf8')
    writeFileSync(api, source.replace("'hello to nobody'", "'hello to somebody'"))
    try {
      let before = moto.requests().length
      const changed = await deploy(moto.endpoint, 'rds', '--yes')
      assert.equal(changed.code, 0, changed.output)
      assert.deepEqual(changes(moto.requests().slice(before)), [
        'PUT /2015-03-31/functions/buddy-system/code',
        'PUT /2015-03-31/functions/buddy-system-db-seeder/code',
        'POST /2015-03-31/functions/buddy-system/versions',
        'PUT /2015-03-31/functions/buddy-system/aliases/live',
      ])
      assert.match(changed.output, /updated: function buddy-system \(code\), function buddy-system-db-seeder \(code\)/)
      before = moto.requests().length
      assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
      assert.deepEqual(changes(moto.requests().slice(before)), [])
    } finally {
      writeFileSync(api, source)
    }
  })

  /** The seeder's set-up events since `from`, each with the common passwords it carries taken out (checked here). */
  const invocations = (from = 0) =>
    moto
      .requests()
      .slice(from)
      .filter((r) => operationOf(r).endsWith('/functions/buddy-system-db-seeder/invocations'))
      .map((r) => {
        const { commonPasswords: list, ...event } = JSON.parse(r.body || '{}')
        assert.deepEqual(list, commonPasswords, 'every set up carries the list')
        return event
      })

  it('deploys the rds scenario: a private PostgreSQL instance with IAM authentication, no password in any function', async () => {
    await seeding(1)
    const { code, output } = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(code, 0, output)
    await assertCommon(['AWSLambdaVPCAccessExecutionRole'])
    const { DBInstances: [db] = [] } = await rds.send(
      new DescribeDBInstancesCommand({ DBInstanceIdentifier: 'buddy-system' }),
    )
    assert.equal(db.Engine, 'postgres')
    assert.equal(db.DBInstanceClass, 'db.t4g.micro')
    assert.equal(db.AllocatedStorage, 20)
    assert.equal(db.MasterUsername, 'postgres')
    assert.equal(db.PubliclyAccessible, false)
    assert.equal(db.IAMDatabaseAuthenticationEnabled, true)
    assert.deepEqual(
      db.VpcSecurityGroups?.map((g) => g.VpcSecurityGroupId),
      [(await securityGroup())[0].GroupId],
    )
    assert.deepEqual(db.TagList, [{ Key: 'app', Value: 'buddy-system' }])
    await assertFunctions((vars) => {
      assert.equal(vars.DB_LOCATION, 'rds')
      assert.equal(vars.PG_AUTH, 'iam')
      assert.equal(vars.PG_USERNAME, 'buddy_api')
      assert.equal(vars.PG_DATABASE, 'postgres')
      assert.equal(vars.PG_ENDPOINT, db.Endpoint?.Address)
      assert.equal(vars.PG_PORT, '5432')
      assert.equal(vars.PG_SSLMODE, 'verify-full')
      assert.equal(vars.PG_SSLROOTCERT, '/var/task/rds-ca.pem', "the RDS CAs in the package, not the runtime's bundle")
      assert.equal(vars.NODE_EXTRA_CA_CERTS, undefined)
      assert.equal(vars.PG_PASSWORD, undefined, 'no password in a function')
    })
    // The execution role connects as buddy_api to this instance, and as nothing else.
    const { PolicyDocument } = await iam.send(
      new GetRolePolicyCommand({ RoleName: 'buddy-system-lambda-execution-role', PolicyName: 'rds-db-connect' }),
    )
    assert.deepEqual(JSON.parse(decodeURIComponent(PolicyDocument!)).Statement, [
      {
        Effect: 'Allow',
        Action: 'rds-db:connect',
        Resource: `arn:aws:rds-db:us-east-1:123456789012:dbuser:${db.DbiResourceId}/buddy_api`,
      },
    ])
    // db.t4g.micro: about 95 connections, less 10 for RDS's own, the seeder and a person's psql.
    assert.equal(await reserved(), 85)
    // The master password: sent once, to the seeder in its invocation (to make the API role), and printed once.
    const [invoked] = invocations()
    const password = invoked.master.password as string
    assert.equal(invoked.master.username, 'postgres')
    assert.ok(password.length >= 20)
    assert.equal(output.split(password).length - 1, 1, 'the password is printed exactly once')
    assert.match(output, /password manager \(for psql, as postgres\): no function holds it/)
    const created = moto
      .requests()
      .filter((r) => operationOf(r) === 'CreateDBInstance')
      .map((r) => new URLSearchParams(r.body))
    assert.equal(created[0].get('MasterUserPassword'), password)
    assert.equal(created[0].get('EnableIAMDatabaseAuthentication'), 'true')

    const before = moto.requests().length
    await moto.answerInvocations([seederAnswer('loaded before')])
    const again = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(again.code, 0, again.output)
    assert.ok(!again.output.includes(password), 'a rerun does not print the password')
    assert.deepEqual(invocations(before), [{}], 'a rerun does not need the master password')
    assert.deepEqual(changes(moto.requests().slice(before)), [], 'and changes nothing')

    // Stopped by its owner (RDS would start it again after 7 days): the deploy starts it, says so, and goes on.
    await rds.send(new StopDBInstanceCommand({ DBInstanceIdentifier: 'buddy-system' }))
    const stopped = moto.requests().length
    await moto.answerInvocations([seederAnswer('loaded before')])
    const started = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(started.code, 0, started.output)
    assert.match(started.output, /DB instance buddy-system is stopped: starting it/)
    assert.deepEqual(changes(moto.requests().slice(stopped)), ['StartDBInstance'])
    const { DBInstances: [running] = [] } = await rds.send(
      new DescribeDBInstancesCommand({ DBInstanceIdentifier: 'buddy-system' }),
    )
    assert.equal(running.DBInstanceStatus, 'available')
  })

  it('reserves the concurrency that PostgreSQL serves, as the seeder reads it, and grows the instance with --instance-class', async () => {
    // The seeder's answer on PostgreSQL carries its connection figures (postgres.test.ts checks them on a real one).
    const onPostgres = (max: number) => ({ ...(seederAnswer() as object), connections: { max, reserved: 5 } })
    await moto.answerInvocations([onPostgres(40)])
    const first = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(first.code, 0, first.output)
    assert.equal(await reserved(), 30, 'max_connections less the reserved ones and 5 for the seeder and people')
    await moto.answerInvocations([onPostgres(40)])
    assert.equal((await deploy(moto.endpoint, 'rds', '--yes', '--instance-class', 'db.t4g.micro')).code, 0)
    assert.deepEqual(sent(/^ModifyDBInstance$/), [], 'the same class: nothing to change')

    const before = moto.requests().length
    await moto.answerInvocations([onPostgres(180)])
    const grown = await deploy(moto.endpoint, 'rds', '--yes', '--instance-class', 'db.t4g.small')
    assert.equal(grown.code, 0, grown.output)
    assert.match(grown.output, /DB instance buddy-system: db\.t4g\.micro → db\.t4g\.small; RDS restarts the database/)
    const modified = moto
      .requests()
      .slice(before)
      .filter((r) => operationOf(r) === 'ModifyDBInstance')
      .map((r) => new URLSearchParams(r.body))
    assert.deepEqual(
      modified.map((m) => [m.get('DBInstanceClass'), m.get('ApplyImmediately')]),
      [['db.t4g.small', 'true']],
    )
    const { DBInstances: [db] = [] } = await rds.send(
      new DescribeDBInstancesCommand({ DBInstanceIdentifier: 'buddy-system' }),
    )
    assert.equal(db.DBInstanceClass, 'db.t4g.small')
    assert.equal(await reserved(), 170, 'the reservation follows the instance')
    const bad = await deploy(moto.endpoint, 'rds', '--yes', '--instance-class', 'huge')
    assert.match(bad.output, /--instance-class huge: an RDS instance class, such as db\.t4g\.micro/)
  })

  it('moves a deployment from before IAM authentication to it: the old password makes the API role, then goes', async () => {
    await seeding(2)
    assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
    // As an older deploy left it: the functions log in as the master user with PG_PASSWORD, and so does version 1.
    const old = {
      DB_LOCATION: 'rds',
      PG_USERNAME: 'postgres',
      PG_PASSWORD: 'the-old-password',
      JWT_KEY: 'k'.repeat(64),
    }
    for (const name of ['buddy-system', 'buddy-system-db-seeder']) {
      const vars = (await fn(name)).Configuration?.Environment?.Variables ?? {}
      const { PG_AUTH, PG_DATABASE, ...rest } = vars
      await lambda.send(
        new UpdateFunctionConfigurationCommand({ FunctionName: name, Environment: { Variables: { ...rest, ...old } } }),
      )
    }
    const { Version } = await lambda.send(
      new PublishVersionCommand({ FunctionName: 'buddy-system', Description: `schema ${SCHEMA_VERSION}` }),
    )
    await lambda.send(new UpdateAliasCommand({ FunctionName: 'buddy-system', Name: 'live', FunctionVersion: Version }))
    const before = moto.requests().length
    const { code, output } = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(code, 0, output)
    assert.deepEqual(invocations(before), [{ master: { username: 'postgres', password: 'the-old-password' } }])
    assert.equal((await fn('buddy-system')).Configuration?.Environment?.Variables?.PG_PASSWORD, undefined)
    assert.match(output, new RegExp(`version ${Version} \\(it held the database password\\)`))
    await assert.rejects(
      lambda.send(new GetFunctionCommand({ FunctionName: 'buddy-system', Qualifier: Version })),
      /not found|ResourceNotFound/i,
    )
    assert.ok(!output.includes('the-old-password'), 'the password is never printed')
  })

  it('resets the master password where the API role cannot log in and nobody holds that password, and says so', async () => {
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
    // RDS refused the API role's token (IAM not in effect yet): a new master password would change nothing.
    const refusing = moto.requests().length
    await moto.answerInvocations([lambdaError(new TokenRefused('PAM authentication failed for user "buddy_api"'))])
    const refused = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(refused.code, 1, refused.output)
    assert.match(refused.output, /RDS refused its IAM token: .*Run the same command again in a minute/)
    assert.deepEqual(changes(moto.requests().slice(refusing)), [], 'no new password')

    // No API role: a reset, but not without --yes where nobody can answer the question.
    const asking = moto.requests().length
    await moto.answerInvocations([lambdaError(new NeedsMaster('password authentication failed for user "buddy_api"'))])
    const unasked = await deploy(moto.endpoint, 'rds')
    assert.equal(unasked.code, 1, unasked.output)
    assert.match(unasked.output, /Reset the master password of DB instance buddy-system, .* Not without --yes/)
    assert.deepEqual(changes(moto.requests().slice(asking)), [])

    // A first deploy stopped after CreateDBInstance and before the seeder made the API role: the seeder answers 401.
    const before = moto.requests().length
    await moto.answerInvocations([
      lambdaError(new NeedsMaster('password authentication failed for user "buddy_api"')),
      seederAnswer('loaded before'),
    ])
    const { code, output } = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(code, 0, output)
    assert.match(
      output,
      /the API role does not exist yet, and nobody holds the master password \(an earlier deploy stopped halfway\)\n.*resetting it/,
    )
    const modify = moto
      .requests()
      .slice(before)
      .filter((r) => operationOf(r) === 'ModifyDBInstance')
      .map((r) => new URLSearchParams(r.body))
    assert.equal(modify.length, 1)
    assert.equal(modify[0].get('ApplyImmediately'), 'true')
    const password = modify[0].get('MasterUserPassword')!
    assert.ok(password.length >= 20)
    assert.deepEqual(invocations(before), [{}, { master: { username: 'postgres', password } }])
    assert.equal(output.split(password).length - 1, 1, 'the new password is printed once')
    assert.equal(changes(moto.requests().slice(before)).filter((op) => op === 'CreateDBInstance').length, 0)
  })

  it("stops before the release where the seeder's answer is not one it gives (moto's own, an echo of the event)", async () => {
    const { code, output } = await deploy(moto.endpoint, 'efs', '--yes') // nothing queued
    assert.equal(code, 1, output)
    assert.match(
      output,
      /database schema and sample data failed: the seeder answered what deploy\.ts cannot read \(its set up expected\): \{commonPasswords\}/,
    )
    assert.deepEqual(sent(/\/versions$|\/aliases|\/url$/), [], 'no version, alias or URL')
    assert.doesNotMatch(output, /The API is at/)
  })

  it(
    'moves an efs deployment to RDS: writes stopped, the copy, the switch, concurrency back; a failed copy leaves it on EFS',
    { timeout: 120_000 },
    async () => {
      await moto.answerInvocations([seederAnswer()])
      assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
      const url = (
        await lambda.send(new GetFunctionUrlConfigCommand({ FunctionName: 'buddy-system', Qualifier: 'live' }))
      ).FunctionUrl
      const liveEnvironment = async () => {
        const { FunctionVersion } = await lambda.send(
          new GetAliasCommand({ FunctionName: 'buddy-system', Name: 'live' }),
        )
        return (
          (await lambda.send(new GetFunctionCommand({ FunctionName: 'buddy-system', Qualifier: FunctionVersion })))
            .Configuration?.Environment?.Variables ?? {}
        )
      }
      /** What each step sent since `from`: the concurrency set, the seeder invoked (with its payload), a function configured. */
      const steps = (from: number) =>
        moto
          .requests()
          .slice(from)
          .flatMap((r) => {
            const op = operationOf(r)
            if (op === 'PUT /2017-10-31/functions/buddy-system/concurrency')
              return [`concurrency ${JSON.parse(r.body).ReservedConcurrentExecutions}`]
            if (op === 'DELETE /2017-10-31/functions/buddy-system/concurrency') return ['concurrency unreserved']
            if (op.endsWith('/functions/buddy-system-db-seeder/invocations')) {
              const { master, commonPasswords, ...rest } = JSON.parse(r.body || '{}')
              const list = commonPasswords ? ` with ${commonPasswords.length} common passwords` : ''
              return [`invoke ${JSON.stringify(rest)}${list}${master ? ' and the master password' : ''}`]
            }
            const configured = /^PUT \/2015-03-31\/functions\/([\w-]+)\/configuration$/.exec(op)
            if (configured) {
              const { Environment, FileSystemConfigs } = JSON.parse(r.body)
              return [
                `${configured[1]} on ${Environment.Variables.DB_LOCATION}${FileSystemConfigs.length ? ' with EFS' : ''}`,
              ]
            }
            if (/^PUT \/2015-03-31\/functions\/buddy-system\/aliases\/live$/.test(op)) return ['alias live']
            return []
          })

      // The copy fails: the API stays on EFS, its live version untouched, and serves again.
      const failing = moto.requests().length
      // RDS holds other rows than the file: the real seeder refuses the copy.
      await moto.answerInvocations(
        (await realSeederAnswers([{ commonPasswords }, { from: 'efs', commonPasswords }], 'local')).slice(1),
      )
      const failed = await deploy(moto.endpoint, 'rds', '--from-efs', '--yes')
      assert.equal(failed.code, 1, failed.output)
      assert.match(
        failed.output,
        /the seeder failed: CopyRefused: .*nothing was copied.*\n.*The API stays on EFS, and serves again/,
      )
      // The instance is new: the master password comes along, for the seeder to make the API role.
      assert.deepEqual(steps(failing), [
        'buddy-system-db-seeder on rds with EFS',
        'concurrency 0',
        'invoke {"from":"efs"} with 17950 common passwords and the master password',
        'concurrency 10',
      ])
      assert.equal((await liveEnvironment()).DB_LOCATION, 'efs')
      assert.equal((await fn('buddy-system')).Configuration?.Environment?.Variables?.DB_LOCATION, 'efs')
      assert.equal(await reserved(), 10)

      // The copy succeeds: the switch comes after it, and the concurrency after the release. Before it, the
      // concurrency is 0, as a move stopped after it stopped writes leaves it: the API gets what RDS serves (85), not 0 nor efs's 10.
      await lambda.send(
        new PutFunctionConcurrencyCommand({ FunctionName: 'buddy-system', ReservedConcurrentExecutions: 0 }),
      )
      const moving = moto.requests().length
      await moto.answerInvocations([
        ...(await realSeederAnswers([{ from: 'efs', commonPasswords }])),
        seederAnswer('loaded before'),
      ])
      const moved = await deploy(moto.endpoint, 'rds', '--from-efs', '--yes')
      assert.equal(moved.code, 0, moved.output)
      // The seeder kept its mount from the failed move; after the copy it loses it.
      assert.deepEqual(steps(moving), [
        'concurrency 0',
        'invoke {"from":"efs"} with 17950 common passwords',
        'buddy-system on rds',
        'alias live',
        'concurrency 85',
        'buddy-system-db-seeder on rds',
        'invoke {} with 17950 common passwords',
      ])
      assert.match(moved.output, /writes stopped: the API answers 429 until the move is done/)
      // Requests already running may write until their timeout (10 s): the copy waits them out (issue 26).
      const sentAt = (op: RegExp, body: RegExp) =>
        moto
          .requests()
          .slice(moving)
          .find((r) => op.test(operationOf(r)) && body.test(r.body))!.signed!
      const stopped = sentAt(/\/functions\/buddy-system\/concurrency$/, /"ReservedConcurrentExecutions":0/)
      const copied = sentAt(/buddy-system-db-seeder\/invocations$/, /"from":"efs"/)
      assert.ok(copied.getTime() - stopped.getTime() >= 11_000, `${stopped.toISOString()} → ${copied.toISOString()}`)
      assert.match(moved.output, /waiting 12 s for the requests already running \(timeout 10 s\) to end/)
      assert.match(moved.output, /copied 8 users, 16 animals and \d+ fosters from SQLite .* into .*, with their ids/)
      assert.match(
        moved.output,
        /the file system is still there, no longer used: tsx deploy.ts destroy efs removes it, and only it/,
      )
      assert.equal((await liveEnvironment()).DB_LOCATION, 'rds')
      assert.equal(
        (await lambda.send(new GetFunctionUrlConfigCommand({ FunctionName: 'buddy-system', Qualifier: 'live' })))
          .FunctionUrl,
        url,
        'the same URL',
      )
      assert.equal(await reserved(), 85)

      // A move stopped between the release and giving the concurrency back left 0: a rerun never keeps it (issue 26).
      await lambda.send(
        new PutFunctionConcurrencyCommand({ FunctionName: 'buddy-system', ReservedConcurrentExecutions: 0 }),
      )
      await moto.answerInvocations([seederAnswer('loaded before')])
      assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
      assert.equal(await reserved(), 85, 'not 0: what an rds deploy reserves on a db.t4g.micro')

      // A rollback across the move would serve the EFS file again: refused, naming both databases (issue 26).
      const live = (await lambda.send(new GetAliasCommand({ FunctionName: 'buddy-system', Name: 'live' })))
        .FunctionVersion
      const back = await deploy(moto.endpoint, 'rollback', 'rds')
      assert.equal(back.code, 1, back.output)
      assert.match(
        back.output,
        /version 1 uses SQLite on EFS, and the live release PostgreSQL at buddy-system\.\S+: it would serve another database/,
      )
      assert.equal(
        (await lambda.send(new GetAliasCommand({ FunctionName: 'buddy-system', Name: 'live' }))).FunctionVersion,
        live,
        'live did not move',
      )

      // Again: the move is done, and this is a deploy of rds.
      await moto.answerInvocations([seederAnswer('loaded before')])
      const again = await deploy(moto.endpoint, 'rds', '--from-efs', '--yes')
      assert.equal(again.code, 0, again.output)
      assert.match(again.output, /the API is on RDS already: the move from EFS is done/)

      // destroy efs: the file system alone, and the role's EFS policy; the RDS deployment serves on.
      await backedUp()
      const { code, output } = await deploy(moto.endpoint, 'destroy', 'efs', '--yes')
      assert.equal(code, 0, output)
      assert.match(output, /runs on RDS now \(moved from EFS\): destroy efs removes only the file system/)
      assert.match(
        output,
        /removed: access point fsap-\w+, (mount target fsmt-\w+, )+file system fs-\w+, role buddy-system-lambda-execution-role: efs-client; the RDS deployment is untouched/,
      )
      assert.deepEqual((await efs.send(new DescribeFileSystemsCommand({}))).FileSystems, [])
      assert.equal((await lambda.send(new ListFunctionsCommand({}))).Functions?.length, 2)
      assert.equal((await rds.send(new DescribeDBInstancesCommand({}))).DBInstances?.length, 1)
      const inline = await iam.send(new ListRolePoliciesCommand({ RoleName: 'buddy-system-lambda-execution-role' }))
      assert.deepEqual(inline.PolicyNames, ['rds-db-connect'])
    },
  )

  it(
    'never leaves the API at 0 after a move from an API that had no reservation (a small account)',
    { timeout: 120_000 },
    async () => {
      await moto.answerInvocations([seederAnswer()])
      assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
      // As an account too small to reserve any: the efs deploy went on unreserved.
      await lambda.send(new DeleteFunctionConcurrencyCommand({ FunctionName: 'buddy-system' }))
      await moto.answerInvocations([
        ...(await realSeederAnswers([{ from: 'efs', commonPasswords }])),
        seederAnswer('loaded before'),
      ])
      const moved = await deploy(moto.endpoint, 'rds', '--from-efs', '--yes')
      assert.equal(moved.code, 0, moved.output)
      assert.notEqual(await reserved(), 0, 'every request would answer 429 from then on')
      assert.ok(
        sent(/concurrency$/i).includes('DELETE /2017-10-31/functions/buddy-system/concurrency'),
        'none, as before the move',
      )
    },
  )

  it('refuses --from-efs where there is no efs deployment, or with --dry-run', async () => {
    const none = await deploy(moto.endpoint, 'rds', '--from-efs', '--yes')
    assert.equal(none.code, 1)
    assert.match(
      none.output,
      /--from-efs: there is no efs deployment named buddy-system to move \(its function buddy-system is missing\)/,
    )
    assert.deepEqual(changes(moto.requests()), [], 'it changed nothing')
    const script = await deploy(moto.endpoint, 'rds', '--from-efs', '--dry-run')
    assert.equal(script.code, 1)
    assert.match(script.output, /run it without --dry-run/)
  })

  it('destroys everything a deploy made, and says so', async () => {
    for (const scenario of ['efs', 'rds']) {
      await seeding(1)
      assert.equal((await deploy(moto.endpoint, scenario, '--yes')).code, 0)
      const refused = await deploy(moto.endpoint, 'destroy', scenario)
      assert.equal(refused.code, 1)
      assert.match(refused.output, /pass --yes to confirm/)
      assert.equal((await lambda.send(new ListFunctionsCommand({}))).Functions?.length, 2, 'nothing was deleted')

      const before: number = moto.requests().length
      await backedUp()
      const { code, output } = await deploy(moto.endpoint, 'destroy', scenario, '--yes')
      assert.equal(code, 0, output)
      assert.match(
        output,
        /removed: function buddy-system, function buddy-system-db-seeder, metric filter buddy-system-5xx, log group \/aws\/lambda\/buddy-system, log group \/aws\/lambda\/buddy-system-db-seeder, .*security group sg-\w+, role buddy-system-lambda-execution-role/,
      )
      // The role goes last: Lambda deletes the functions' network interfaces with it, and only then can the group go.
      const order: string[] = changes(moto.requests().slice(before)).filter((op) =>
        /DeleteSecurityGroup|DeleteRole|DELETE \/2015-03-31\/functions/.test(op),
      )
      assert.deepEqual(order, [
        'DELETE /2015-03-31/functions/buddy-system',
        'DELETE /2015-03-31/functions/buddy-system-db-seeder',
        'DeleteSecurityGroup',
        'DeleteRolePolicy', // efs-client, or rds-db-connect
        'DeleteRole',
      ])
      assert.ok(
        sent(/^DescribeNetworkInterfaces$/).length > 0,
        'it looked for the interfaces before deleting the group',
      )
      assert.equal(await logGroup('/aws/lambda/buddy-system'), undefined)
      assert.deepEqual((await lambda.send(new ListFunctionsCommand({}))).Functions, [])
      await assert.rejects(
        iam.send(new GetRoleCommand({ RoleName: 'buddy-system-lambda-execution-role' })),
        /NoSuchEntity|cannot be found/,
      )
      assert.deepEqual(await securityGroup(), [])
      assert.deepEqual((await efs.send(new DescribeFileSystemsCommand({}))).FileSystems, [])
      assert.deepEqual((await rds.send(new DescribeDBInstancesCommand({}))).DBInstances, [])
      const twice = await deploy(moto.endpoint, 'destroy', scenario, '--yes')
      assert.equal(twice.code, 0, twice.output)
      assert.match(twice.output, /nothing to remove/)
    }
  })

  it('turns backups on from the first deploy and on an older one: EFS automatic backups, RDS --backup-days and deletion protection; status shows them', async () => {
    // A fresh file system is made with AWS Backup's automatic backups.
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
    const [made] = moto
      .requests()
      .filter((r) => operationOf(r) === 'POST /2015-02-01/file-systems')
      .map((r) => JSON.parse(r.body))
    assert.equal(made.Backup, true)
    const none = await deploy(moto.endpoint, 'status', 'efs')
    assert.match(none.output, /automatic backups\s+ENABLED; newest: none yet \(AWS Backup makes one a day\)/)
    await backedUp()
    const one = await deploy(moto.endpoint, 'status', 'efs')
    assert.match(
      one.output,
      /automatic backups\s+ENABLED; newest: \d{4}-\d\d-\d\dT[\d:.]+Z in aws\/efs\/automatic-backup-vault/,
    )

    // One made before backups (CreateFileSystem's Backup defaults to false): a rerun turns them on.
    await moto.reset()
    const old = await efs.send(
      new CreateFileSystemCommand({
        CreationToken: 'buddy-system',
        Encrypted: true,
        Tags: [
          { Key: 'Name', Value: 'buddy-system' },
          { Key: 'app', Value: 'buddy-system' },
        ],
      }),
    )
    await assert.rejects(
      efs.send(new DescribeBackupPolicyCommand({ FileSystemId: old.FileSystemId })),
      /PolicyNotFound/,
    )
    await seeding(1)
    const older = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(older.code, 0, older.output)
    assert.match(older.output, new RegExp(`updated: file system ${old.FileSystemId} \\(automatic backups\\)`))
    const policy = await efs.send(new DescribeBackupPolicyCommand({ FileSystemId: old.FileSystemId }))
    assert.equal(policy.BackupPolicy?.Status, 'ENABLED')

    // RDS: 7 days and deletion protection from the first deploy; --backup-days changes it, a rerun keeps it.
    await moto.reset()
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
    const instance = async () =>
      (await rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: 'buddy-system' }))).DBInstances![0]
    assert.equal((await instance()).BackupRetentionPeriod, 7)
    assert.equal((await instance()).DeletionProtection, true)
    const modifications = (from: number) =>
      moto
        .requests()
        .slice(from)
        .filter((r) => operationOf(r) === 'ModifyDBInstance')
        .map((r) => Object.fromEntries(new URLSearchParams(r.body)))
    let before = moto.requests().length
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'rds', '--yes', '--backup-days', '14')).code, 0)
    assert.deepEqual(
      modifications(before).map((m) => [m.BackupRetentionPeriod, m.DeletionProtection]),
      [['14', undefined]],
    )
    before = moto.requests().length
    await seeding(1)
    const kept = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(kept.code, 0, kept.output)
    assert.deepEqual(modifications(before), [], 'without the flag, a rerun keeps 14 days')
    assert.match(
      (await deploy(moto.endpoint, 'status', 'rds')).output,
      /automated backups\s+kept 14 days, restorable to \d{4}-[\d-]+T[\d:.]+Z; deletion protection on/,
    )

    // An instance from before: one day (RDS's default then), no protection. The rerun keeps the day, protects it.
    await rds.send(
      new ModifyDBInstanceCommand({
        DBInstanceIdentifier: 'buddy-system',
        BackupRetentionPeriod: 1,
        DeletionProtection: false,
        ApplyImmediately: true,
      }),
    )
    before = moto.requests().length
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
    assert.deepEqual(
      modifications(before).map((m) => [m.BackupRetentionPeriod, m.DeletionProtection]),
      [[undefined, 'true']],
    )
    const wrong = await deploy(moto.endpoint, 'rds', '--yes', '--backup-days', '36')
    assert.equal(wrong.code, 1)
    assert.match(wrong.output, /--backup-days 36: RDS keeps automated backups 1 to 35 days/)
  })

  it('keeps the data when it destroys, unless --delete-data: a final snapshot, the recovery points, and a stop where none is made yet', async () => {
    // EFS: no recovery point yet, nothing deleted; with one, it says where the data stays.
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
    const early = await deploy(moto.endpoint, 'destroy', 'efs', '--yes')
    assert.equal(early.code, 1, early.output)
    assert.match(
      early.output,
      /file system fs-\w+ has no backup yet \(AWS Backup makes the first within a day of the deploy\): run destroy again once it has one, or keep its records in a file \(`tsx deploy\.ts export efs`\) and pass --delete-data/,
    )
    assert.equal((await lambda.send(new ListFunctionsCommand({}))).Functions?.length, 2, 'nothing was deleted')
    await backedUp()
    const efsGone = await deploy(moto.endpoint, 'destroy', 'efs', '--yes')
    assert.equal(efsGone.code, 0, efsGone.output)
    assert.match(
      efsGone.output,
      /AWS Backup keeps the file system's recovery points \(the newest from [\d-]+T[\d:.]+Z\) in aws\/efs\/automatic-backup-vault/,
    )

    // RDS: --delete-data asks, as every destroy does; --yes --delete-data: no snapshot, the automated backups go too.
    // (This one first: moto names an automated backup by the minute, and a new instance's would clash with the
    // kept one's.)
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
    const asked = await deploy(moto.endpoint, 'destroy', 'rds', '--delete-data')
    assert.equal(asked.code, 1)
    assert.match(asked.output, /pass --yes to confirm/)
    const rdsWrites = (from: number) =>
      moto
        .requests()
        .slice(from)
        .filter((r) => /^(Modify|Delete)DBInstance$/.test(operationOf(r)))
        .map((r) => Object.fromEntries(new URLSearchParams(r.body)))
    let before = moto.requests().length
    const lost = await deploy(moto.endpoint, 'destroy', 'rds', '--yes', '--delete-data')
    assert.equal(lost.code, 0, lost.output)
    const [, gone] = rdsWrites(before)
    assert.deepEqual(
      [gone.Action, gone.SkipFinalSnapshot, gone.DeleteAutomatedBackups, gone.FinalDBSnapshotIdentifier],
      ['DeleteDBInstance', 'true', 'true', undefined],
    )
    assert.match(lost.output, /removed: .*DB instance buddy-system \(no snapshot\)/)
    assert.deepEqual((await rds.send(new DescribeDBSnapshotsCommand({}))).DBSnapshots, [])

    // --yes alone: protection off, then the delete with a final snapshot, the automated backups kept.
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
    before = moto.requests().length
    const kept = await deploy(moto.endpoint, 'destroy', 'rds', '--yes')
    assert.equal(kept.code, 0, kept.output)
    const [unprotect, deletion] = rdsWrites(before)
    assert.deepEqual([unprotect.Action, unprotect.DeletionProtection], ['ModifyDBInstance', 'false'])
    assert.equal(deletion.Action, 'DeleteDBInstance')
    assert.match(deletion.FinalDBSnapshotIdentifier, /^buddy-system-final-\d{8}-\d{6}$/)
    assert.equal(deletion.DeleteAutomatedBackups, 'false')
    assert.equal(deletion.SkipFinalSnapshot, undefined)
    const { DBSnapshots = [] } = await rds.send(new DescribeDBSnapshotsCommand({ SnapshotType: 'manual' }))
    assert.deepEqual(
      DBSnapshots.map((s) => s.DBSnapshotIdentifier),
      [deletion.FinalDBSnapshotIdentifier],
    )
    assert.match(
      kept.output,
      new RegExp(
        `final snapshot ${deletion.FinalDBSnapshotIdentifier}: every record, kept until you delete it[^\\n]*\\n.*to serve it again: \`tsx deploy\\.ts rds\`, then \`tsx deploy\\.ts restore rds --from-snapshot ${deletion.FinalDBSnapshotIdentifier}\``,
      ),
    )
  })

  it('restores rds to a moment or a snapshot as a new instance: the functions and their connect policy follow, the old one stays', async () => {
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
    const instance = async (id: string) =>
      (await rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: id }))).DBInstances![0]
    const first = await instance('buddy-system')
    const restores = () =>
      moto
        .requests()
        .filter((r) => /^RestoreDBInstance/.test(operationOf(r)))
        .map((r) => Object.fromEntries(new URLSearchParams(r.body)))

    // Refused before anything is made: a moment before the instance, a time without its zone, no moment, no --yes.
    const early = await deploy(moto.endpoint, 'restore', 'rds', '--yes', '--to-time', '2020-01-01T00:00:00Z')
    assert.equal(early.code, 1)
    assert.match(
      early.output,
      /--to-time 2020-01-01T00:00:00Z is before the earliest moment DB instance buddy-system can be restored to: it can restore \S+Z to \S+Z/,
    )
    const local = await deploy(moto.endpoint, 'restore', 'rds', '--yes', '--to-time', '2026-12-01T10:00')
    assert.match(local.output, /--to-time 2026-12-01T10:00: a time with its zone, such as 2026-12-01T10:00:00Z/)
    const none = await deploy(moto.endpoint, 'restore', 'rds', '--yes')
    assert.match(none.output, /restore rds takes one of --to-time .*, --latest or --from-snapshot NAME/)
    await new Promise((resolve) => setTimeout(resolve, 1100)) // a whole second after the instance was made
    const moment = new Date(Math.ceil(first.InstanceCreateTime!.getTime() / 1000) * 1000).toISOString()
    const unasked = await deploy(moto.endpoint, 'restore', 'rds', '--to-time', moment)
    assert.equal(unasked.code, 1)
    assert.match(unasked.output, /stopped: nothing was made \(pass --yes to restore without a terminal\)/)
    assert.deepEqual(restores(), [])

    // A moment in the window: a new instance of it, the policy on its resource id, the functions on it, the seeder,
    // a release; in that order.
    await seeding(1)
    const start = moto.requests().length
    const restored = await deploy(moto.endpoint, 'restore', 'rds', '--yes', '--to-time', moment)
    assert.equal(restored.code, 0, restored.output)
    const sentSince = moto
      .requests()
      .slice(start)
      .map(operationOf)
      .filter((op) => !/^(Describe|Get|List)|^GET /.test(op))
    assert.deepEqual(sentSince, [
      'RestoreDBInstanceToPointInTime',
      'PutRolePolicy',
      'PUT /2015-03-31/functions/buddy-system-db-seeder/configuration',
      'PUT /2015-03-31/functions/buddy-system/configuration',
      'POST /2015-03-31/functions/buddy-system-db-seeder/invocations',
      'POST /2015-03-31/functions/buddy-system/versions',
      'PUT /2015-03-31/functions/buddy-system/aliases/live',
    ])
    const target = `buddy-system-at-${moment.slice(0, 19).replace(/-|:/g, '').replace('T', '-')}`
    const [sent] = restores()
    assert.deepEqual(
      [sent.Action, sent.SourceDBInstanceIdentifier, sent.TargetDBInstanceIdentifier, sent.RestoreTime],
      ['RestoreDBInstanceToPointInTime', 'buddy-system', target, moment.replace('.000Z', 'Z')],
    )
    assert.deepEqual(
      [sent.DBSubnetGroupName, sent.PubliclyAccessible, sent.EnableIAMDatabaseAuthentication, sent.DeletionProtection],
      ['buddy-system', 'false', 'true', 'true'],
    )
    const onIt = async (db: { Endpoint?: { Address?: string }; DbiResourceId?: string }) => {
      for (const name of ['buddy-system', 'buddy-system-db-seeder'])
        assert.equal((await fn(name)).Configuration?.Environment?.Variables?.PG_ENDPOINT, db.Endpoint?.Address, name)
      const policy = await iam.send(
        new GetRolePolicyCommand({ RoleName: 'buddy-system-lambda-execution-role', PolicyName: 'rds-db-connect' }),
      )
      const resource = JSON.parse(decodeURIComponent(policy.PolicyDocument!)).Statement[0].Resource
      assert.equal(resource, `arn:aws:rds-db:us-east-1:123456789012:dbuser:${db.DbiResourceId}/buddy_api`)
    }
    const second = await instance(target)
    await onIt(second)
    assert.equal((await instance('buddy-system')).DBInstanceStatus, 'available', 'the one it used stays')
    assert.match(restored.output, /created: DB instance buddy-system-at-\d{8}-\d{6}, version 2/)
    assert.match(
      restored.output,
      /DB instance buddy-system stays, as it was \(and bills\): to go back to it, `tsx deploy\.ts restore rds --latest --from-instance buddy-system`/,
    )

    // status, a deploy and destroy follow the instance the API uses.
    assert.match((await deploy(moto.endpoint, 'status', 'rds')).output, new RegExp(`✔ DB instance ${target} `))
    let before = moto.requests().length
    await seeding(1)
    const rerun = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(rerun.code, 0, rerun.output)
    assert.deepEqual(changes(moto.requests().slice(before)), [], 'the deploy finds the restored instance as it is')

    // From a snapshot (a final snapshot of a destroy, say): the same, from RestoreDBInstanceFromDBSnapshot.
    await rds.send(new CreateDBSnapshotCommand({ DBInstanceIdentifier: target, DBSnapshotIdentifier: 'kept' }))
    await new Promise((resolve) => setTimeout(resolve, 1100)) // its name's second differs from the first restore's
    await seeding(1)
    const fromSnapshot = await deploy(moto.endpoint, 'restore', 'rds', '--yes', '--from-snapshot', 'kept')
    assert.equal(fromSnapshot.code, 0, fromSnapshot.output)
    const [, snapshotRestore] = restores()
    assert.deepEqual(
      [snapshotRestore.Action, snapshotRestore.DBSnapshotIdentifier, snapshotRestore.DeletionProtection],
      ['RestoreDBInstanceFromDBSnapshot', 'kept', 'true'],
    )
    const third = await instance(snapshotRestore.DBInstanceIdentifier)
    // Each instance has its own resource id (moto gives all one: its front proxy gives each its own, as AWS does).
    assert.notEqual(third.DbiResourceId, second.DbiResourceId)
    assert.notEqual(second.DbiResourceId, first.DbiResourceId)
    await onIt(third)
    const missing = await deploy(moto.endpoint, 'restore', 'rds', '--yes', '--from-snapshot', 'nothing-here')
    assert.match(missing.output, /there is no DB snapshot nothing-here/)

    // Back to the first instance, as the restore's hint says: its latest moment, as a new instance.
    await new Promise((resolve) => setTimeout(resolve, 1100))
    await seeding(1)
    const back = await deploy(moto.endpoint, 'restore', 'rds', '--yes', '--latest', '--from-instance', 'buddy-system')
    assert.equal(back.code, 0, back.output)
    const [, , latest] = restores()
    assert.deepEqual(
      [latest.SourceDBInstanceIdentifier, latest.UseLatestRestorableTime, latest.RestoreTime],
      ['buddy-system', 'true', undefined],
    )
    await onIt(await instance(latest.TargetDBInstanceIdentifier))

    // destroy removes the instance the API uses, and names the three the restores left.
    before = moto.requests().length
    const destroyed = await deploy(moto.endpoint, 'destroy', 'rds', '--yes')
    assert.equal(destroyed.code, 0, destroyed.output)
    const deleted = moto
      .requests()
      .slice(before)
      .filter((r) => operationOf(r) === 'DeleteDBInstance')
      .map((r) => new URLSearchParams(r.body).get('DBInstanceIdentifier'))
    assert.deepEqual(deleted, [latest.TargetDBInstanceIdentifier])
    const left = /Still there, and billing: DB instance ([\w, -]+), which a restore left/.exec(destroyed.output)
    assert.deepEqual(left?.[1].split(', ').sort(), ['buddy-system', target, third.DBInstanceIdentifier!].sort())
  })

  it('exports the deployed database to a local SQLite file a page at a time: every row, npm start serves it, seed.ts copies it; a stopped export leaves no file', async (t) => {
    const server = await startPostgres()
    if (typeof server === 'string') {
      if (process.env.CI === 'true') throw new Error(`CI=true and PostgreSQL cannot start: ${server}`)
      return t.skip(server)
    }
    t.after(() => server.stop())
    const dir = mkdtempSync(join(tmpdir(), 'buddy-export-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    // What the seeder function reads: a real SQLite file (efs), a real PostgreSQL database (rds), each with the
    // sample and then more rows than a page holds (1,000).
    const sources = {
      efs: await openDatabase({ kind: 'sqlite', path: join(dir, 'source-efs.db'), onNetworkFs: false }),
      rds: await openDatabase(configFromEnv({ ...server.env, DB_LOCATION: 'rds', PG_DATABASE: 'postgres' })),
    }
    t.after(async () => {
      for (const db of Object.values(sources)) await db.close()
    })
    /** Every exported table's rows, in order, as plain values (SQLite's 0/1 and PostgreSQL's booleans alike). */
    const dump = async (db: Database) => {
      const tables = {
        users: 'id, username, username_key, email, email_key, password_hash, created_at, is_staff, password_version',
        animals: 'id, name, age, kind, fixed, vaccinated, intake_date, adopter_id, adoption_date',
        fosters: 'id, animal_id, user_id, start_date, end_date',
        sample_loads: 'loaded_at, added_rows',
      }
      const out: Record<string, string[]> = {}
      for (const [table, columns] of Object.entries(tables)) {
        const rows = await db.values(`SELECT ${columns} FROM ${table} ORDER BY ${columns.split(',')[0]}`)
        out[table] = rows.map((row) =>
          JSON.stringify(
            row.map((v) =>
              v === null
                ? null
                : typeof v === 'boolean'
                  ? String(Number(v))
                  : String(v).replace(/^([\d-]{10}) /, '$1T'),
            ),
          ),
        )
      }
      return out
    }

    for (const scenario of ['efs', 'rds'] as const) {
      const source = sources[scenario]
      await setUp(source, 'deployed')
      for (let i = 0; i < 1100; i++) {
        const username = `exported${i}`
        await createUser(source, {
          username,
          email: `${username}@example.org`,
          passwordHash: NO_PASSWORD,
          created_at: '2026-12-01T10:00:00Z',
        })
      }
      for (let i = 0; i < 2500; i++)
        await createAnimal(source, {
          name: `Pet ${i}`,
          age: i % 15,
          kind: i % 2 ? 'cat' : 'dog',
          fixed: i % 3 === 0,
          vaccinated: true,
          intake_date: '2026-11-01',
        })
      await source.all('DELETE FROM animals WHERE id = ?', [20]) // a gap in the ids
      await moto.reset()
      await seeding(1)
      assert.equal((await deploy(moto.endpoint, scenario, '--yes')).code, 0)

      const proxy = await startProxy(moto.endpoint, {
        invoke: (fn, event) => {
          assert.equal(fn, 'buddy-system-db-seeder')
          return runSeeder(source, event, 'deployed', () => Promise.reject(new Error('no copy here')))
        },
      })
      t.after(() => proxy.close())
      const out = join(dir, `${scenario}.db`)
      const exported = await deploy(proxy.endpoint, 'export', scenario, '--out', out)
      assert.equal(exported.code, 0, exported.output)
      const held = await dump(source)
      assert.match(
        exported.output,
        new RegExp(`users: 1000 of ${held.users.length}\\n.*users: ${held.users.length} of ${held.users.length}\\n`),
      )
      assert.match(exported.output, new RegExp(`animals: ${held.animals.length} of ${held.animals.length}`))
      assert.match(
        exported.output,
        new RegExp(
          `Exported ${held.users.length} users, ${held.animals.length} animals and ${held.fosters.length} fosters to ${out}`,
        ),
      )
      const pages = proxy.calls.filter((op) => op.endsWith('/invocations')).length
      assert.equal(
        pages,
        2 + 3 + 1 + 1,
        'users in two pages, animals in three, fosters and the sample record in one each',
      )
      const file = await openDatabase({ kind: 'sqlite', path: out, onNetworkFs: false })
      assert.deepEqual(await dump(file), held, 'row by row')
      await file.close()
      assert.equal(existsSync(`${out}.partial`), false)

      // npm start serves it; a new animal takes the next id after the source's largest, the deleted ones' included.
      const api = run('api.ts', {
        DB_LOCATION: undefined,
        DB_PATH: out,
        PORT: '0',
        HOST: '127.0.0.1',
        JWT_KEY: undefined,
      })
      try {
        const [, url] = await api.waitFor(/API on (http:\/\/\S+)/)
        const answer = await (await fetch(`${url}/animals?limit=1`)).json()
        assert.equal(answer.meta.count, held.animals.length)
      } finally {
        api.child.kill('SIGINT')
        await api.exited
      }
      // seed.ts copies it into another database.
      const copy = run('seed.ts', { DB_LOCATION: undefined, DB_PATH: join(dir, `${scenario}-copy.db`) }, [
        '--from',
        out,
      ])
      assert.equal(await copy.exited, 0, copy.output())
      assert.match(copy.output(), new RegExp(`copied ${held.users.length} users, ${held.animals.length} animals`))

      // A file that is there is never overwritten.
      const again = await deploy(proxy.endpoint, 'export', scenario, '--out', out)
      assert.equal(again.code, 1)
      assert.match(again.output, /the file is there already; name another \(nothing was overwritten\)/)
    }

    // An export that fails halfway (the seeder fails on its third page) leaves no file, half or whole.
    let page = 0
    const failing = await startProxy(moto.endpoint, {
      invoke: async (_fn, event) => {
        if (++page === 3) throw new Error('connection lost')
        return runSeeder(sources.rds, event, 'deployed', () => Promise.reject(new Error('no copy here')))
      },
    })
    t.after(() => failing.close())
    const broken = join(dir, 'broken.db')
    const failed = await deploy(failing.endpoint, 'export', 'rds', '--out', broken)
    assert.equal(failed.code, 1)
    assert.match(failed.output, /connection lost/)
    assert.equal(existsSync(broken), false)
    assert.equal(existsSync(`${broken}.partial`), false)

    // Stopped with Ctrl-C between two pages: only FILE.partial, which the next export replaces.
    let stop: () => void = () => {}
    const stopped = new Promise<void>((resolve) => (stop = resolve))
    page = 0
    const slow = await startProxy(moto.endpoint, {
      invoke: async (_fn, event) => {
        if (++page === 3) {
          stop()
          await new Promise((resolve) => setTimeout(resolve, 5000))
        }
        return runSeeder(sources.rds, event, 'deployed', () => Promise.reject(new Error('no copy here')))
      },
    })
    t.after(() => slow.close())
    const child = run('deploy.ts', aws(slow.endpoint), ['export', 'rds', '--out', broken], work)
    await stopped
    child.child.kill('SIGINT')
    assert.equal(await child.exited, 130, child.output())
    assert.equal(existsSync(broken), false, 'no file passes for whole')
    const whole = await deploy(slow.endpoint, 'export', 'rds', '--out', broken)
    assert.equal(whole.code, 0, whole.output)
    assert.equal(existsSync(`${broken}.partial`), false)
  })

  it("under GitHub Actions: the deploy's outcome on the job's summary page, a failure as an error annotation naming the step", async () => {
    const summaryFile = join(work, 'step-summary.md')
    writeFileSync(summaryFile, '')
    const onGitHub = async (...args: string[]) => {
      const child = run(
        'deploy.ts',
        { ...aws(moto.endpoint), GITHUB_ACTIONS: 'true', GITHUB_STEP_SUMMARY: summaryFile },
        args,
        work,
      )
      return { code: await child.exited, output: child.output() }
    }
    await seeding(1)
    const done = await onGitHub('rds', '--yes')
    assert.equal(done.code, 0, done.output)
    const page = readFileSync(summaryFile, 'utf8')
    assert.match(page, /^### buddy-system \(rds\) deployed to account 123456789012, us-east-1\n\n/)
    assert.match(
      page,
      /\n- The API: https:\/\/\w+\.lambda-url\.us-east-1\.on\.aws\/?\n- Live: version 1 \(schema \d+[^)]*\)\n- created: .*DB instance buddy-system.*\n- reused: .*\n- updated: nothing\n- removed: nothing\n$/,
    )
    assert.doesNotMatch(done.output, /::error/)

    // The seeder fails with a message of two lines and a %: one annotation, its message escaped as the runner reads it.
    await moto.answerInvocations([lambdaError(new Error('disk full: 100% used\nno space left'))])
    const failed = await onGitHub('rds', '--yes')
    assert.equal(failed.code, 1)
    const annotations = failed.output.split('\n').filter((line) => line.startsWith('::error'))
    assert.equal(annotations.length, 1, failed.output)
    assert.match(
      annotations[0],
      /^::error title=deploy\.ts rds --yes::database schema and sample data failed: .*disk full: 100%25 used%0Ano space left/,
    )
    assert.equal(readFileSync(summaryFile, 'utf8'), page, 'a failed deploy adds nothing to the summary')

    // A wait in a log file: a line every 30 s, and no spinner's frames. Lambda keeps the new seeder Pending 32 s.
    await moto.reset()
    let since = 0
    const proxy = await startProxy(moto.endpoint, {
      amend(op, answer) {
        if (op !== 'GET /2015-03-31/functions/buddy-system-db-seeder' || !answer.Configuration) return
        since ||= Date.now()
        if (Date.now() - since < 32_000) Object.assign(answer.Configuration, { State: 'Pending' })
      },
    })
    try {
      await seeding(1)
      const child = run('deploy.ts', { ...aws(proxy.endpoint), GITHUB_ACTIONS: 'true' }, ['efs', '--yes'], work)
      assert.equal(await child.exited, 0, child.output())
      assert.match(child.output(), /\n… waiting for function buddy-system-db-seeder to be active \(3\ds so far\)\n/)
      assert.doesNotMatch(child.output(), /[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]/, 'no spinner')
    } finally {
      await proxy.close()
    }
  })

  it('stops before creating anything without credentials, and says how to configure them', async () => {
    const withNone = (more: Record<string, undefined> = {}) =>
      run(
        'deploy.ts',
        {
          ...aws(moto.endpoint),
          AWS_ACCESS_KEY_ID: undefined,
          AWS_SECRET_ACCESS_KEY: undefined,
          AWS_SHARED_CREDENTIALS_FILE: join(work, 'no-credentials'),
          AWS_CONFIG_FILE: join(work, 'no-config'),
          ...more,
        },
        ['efs', '--yes'],
        work,
      )
    const child = withNone()
    assert.equal(await child.exited, 1)
    assert.match(child.output(), /credentials failed: .*No AWS credentials found: run `aws configure`/s)
    // With no region either, both at once (issue 26).
    const newcomer = withNone({ AWS_REGION: undefined, AWS_DEFAULT_REGION: undefined })
    assert.equal(await newcomer.exited, 1)
    assert.match(
      newcomer.output(),
      /region failed: .*No region: pass --region.*\nNo AWS credentials found: run `aws configure`.*\n`aws configure` sets both\./s,
    )
    assert.deepEqual(changes(moto.requests()), [])
  })

  it('refuses to take over a resource of the same name that is not its own', async () => {
    await iam.send(
      new CreateRoleCommand({ RoleName: 'buddy-system-lambda-execution-role', AssumeRolePolicyDocument: '{}' }),
    )
    const { code, output } = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(code, 1)
    assert.match(
      output,
      /role failed: role buddy-system-lambda-execution-role exists and is not ours \(it has no tag app=buddy-system\): pass another --name/,
    )
    assert.doesNotMatch(output, /\n\s+at /, 'no stack trace')
  })

  it('finishes the job when run again after failing halfway', async () => {
    // Another app's function holds the seeder's name: the deploy fails after making the rest.
    const zip = zipSync({ 'x.mjs': Buffer.from('export const handler = async () => 1') })
    await iam.send(new CreateRoleCommand({ RoleName: 'other', AssumeRolePolicyDocument: '{}' }))
    await lambda.send(
      new CreateFunctionCommand({
        FunctionName: 'buddy-system-db-seeder',
        Runtime: 'nodejs24.x',
        Handler: 'x.handler',
        Role: 'arn:aws:iam::123456789012:role/other',
        Code: { ZipFile: zip },
      }),
    )
    const failed = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(failed.code, 1)
    assert.match(failed.output, /functions failed: function buddy-system-db-seeder exists and is not ours/)
    assert.ok(await fn('buddy-system'), 'the api function was made before the failure')
    await lambda.send(new DeleteFunctionCommand({ FunctionName: 'buddy-system-db-seeder' }))

    const before = moto.requests().length
    await seeding(1)
    const again = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(again.code, 0, again.output)
    const made = changes(moto.requests().slice(before)).filter((op) => !op.endsWith('/configuration'))
    assert.deepEqual(made, [
      'CreateLogGroup',
      'PutRetentionPolicy',
      'POST /2015-03-31/functions',
      'PUT /2017-10-31/functions/buddy-system/concurrency',
      'POST /2015-03-31/functions/buddy-system/versions',
      'POST /2015-03-31/functions/buddy-system/aliases',
      'POST /2021-10-31/functions/buddy-system/url',
      'POST /2015-03-31/functions/buddy-system/policy',
      'POST /2015-03-31/functions/buddy-system/policy',
      'PutMetricFilter',
    ])
    assert.equal(createdFunctions().at(-1).FunctionName, 'buddy-system-db-seeder')
  })

  it('says which flags to pass where the region has no default VPC', async () => {
    const { Vpcs = [] } = await ec2.send(
      new DescribeVpcsCommand({ Filters: [{ Name: 'is-default', Values: ['true'] }] }),
    )
    for (const vpc of Vpcs) {
      const { Subnets = [] } = await ec2.send(
        new DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpc.VpcId!] }] }),
      )
      for (const subnet of Subnets) await ec2.send(new DeleteSubnetCommand({ SubnetId: subnet.SubnetId }))
      await ec2.send(new DeleteVpcCommand({ VpcId: vpc.VpcId }))
    }
    const { code, output } = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(code, 1)
    assert.match(
      output,
      /network failed: this region has no default VPC: pass --subnets \(two or more, in different Availability Zones\)/,
    )
    assert.deepEqual(
      changes(moto.requests()).filter((op) => !/^Delete(Subnet|Vpc)$/.test(op)),
      [],
    )
  })

  it('prints the deploy as an AWS CLI script that bash accepts, calling no AWS API', async () => {
    for (const scenario of ['efs', 'rds']) {
      const child = run(
        'deploy.ts',
        { ...aws(moto.endpoint), AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined },
        [scenario, '--dry-run', ...(scenario === 'rds' ? ['--alerts', 'ops@example.org'] : [])],
        work,
      )
      assert.equal(await child.exited, 0)
      const text = child.stdout()
      assert.ok(text.startsWith('#!/usr/bin/env bash\n'), text)
      writeFileSync(join(work, `deploy-${scenario}.sh`), text)
      execFileSync('bash', ['-n', join(work, `deploy-${scenario}.sh`)])
      assert.match(text, /ROLE_ARN=\$\(aws iam create-role /)
      assert.match(text, /aws lambda create-function --function-name buddy-system --role "\$\{ROLE_ARN\}"/)
      assert.match(text, /--invoked-via-function-url/)
      assert.match(
        text,
        /aws logs put-retention-policy --log-group-name \/aws\/lambda\/buddy-system --retention-in-days 14/,
      )
      assert.match(
        text,
        scenario === 'efs'
          ? /FS_ID=\$\(aws efs create-file-system --creation-token buddy-system --encrypted/
          : /aws rds wait db-instance-available/,
      )
      // No secret in the script: each is a variable it sets itself.
      assert.match(text, /^JWT_KEY=\$\{JWT_KEY:-\$\(openssl rand -hex 32\)\}$/m)
      assert.match(text, /"JWT_KEY":"'"\$\{JWT_KEY\}"/)
      // Nor the common passwords (200 KB): the script reads them as it runs.
      assert.match(text, /^COMMON_PASSWORDS=\$\{COMMON_PASSWORDS:-\$\(npx tsx seed\.ts --common-passwords\)\}$/m)
      assert.match(text, /--payload fileb:\/\/<\(printf %s \$'\{"commonPasswords":'"\$\{COMMON_PASSWORDS\}"/)
      assert.doesNotMatch(text, /iloveyou/)
      if (scenario === 'rds') assert.match(text, /--master-user-password "\$\{PG_PASSWORD\}"/)
      assert.match(
        text,
        /aws logs put-metric-filter --log-group-name \/aws\/lambda\/buddy-system --filter-name buddy-system-5xx --filter-pattern \$'\{ \$\.message\.status >= 500 \}'/,
      )
      if (scenario === 'rds') {
        assert.match(
          text,
          /aws sns subscribe --topic-arn arn:aws:sns:us-east-1:"\$\{ACCOUNT_ID\}":buddy-system-alerts --protocol email --notification-endpoint ops@example\.org/,
        )
        assert.match(
          text,
          /aws cloudwatch put-metric-alarm --alarm-name buddy-system-db-cpu .*--dimensions \$'\[\{"Name":"DBInstanceIdentifier","Value":"buddy-system"\}\]'/,
        )
      } else assert.doesNotMatch(text, /aws sns|put-metric-alarm/)
      assert.match(
        text,
        scenario === 'efs' ? /--reserved-concurrent-executions 10 / : /--reserved-concurrent-executions 85 /,
      )
    }
    assert.deepEqual(moto.requests(), [])
  })

  it(
    'runs that script on a fresh account, refuses to run it twice, and fails where the seeder does',
    { timeout: 240_000 },
    async () => {
      const script = join(work, 'deploy-efs.sh')
      await moto.answerInvocations([seederAnswer()])
      const old = await bash(script, { oldCli: true })
      assert.equal(old.code, 1, old.output)
      assert.match(
        old.output,
        /this AWS CLI does not know --invoked-via-function-url, which a function URL needs: update it/,
      )
      assert.deepEqual(changes(moto.requests()), [], 'before it made anything')
      const first = await bash(script)
      assert.equal(first.code, 0, first.output)
      assert.deepEqual(invocations(), [{}], 'the seeder got the list, read by the script')
      assert.match(first.output, /The API is at https:\/\/\w+\.lambda-url\.us-east-1\.on\.aws/)
      assert.equal((await fn('buddy-system')).Configuration?.Runtime, 'nodejs24.x')
      assert.equal(await reserved(), 10)
      const { FileSystems: [fs] = [] } = await efs.send(
        new DescribeFileSystemsCommand({ CreationToken: 'buddy-system' }),
      )
      const { MountTargets = [] } = await efs.send(new DescribeMountTargetsCommand({ FileSystemId: fs.FileSystemId }))
      assert.equal(
        new Set(MountTargets.map((t) => t.AvailabilityZoneName)).size,
        MountTargets.length,
        'one mount target per zone',
      )

      const again = await bash(script)
      assert.equal(again.code, 1)
      assert.match(
        again.output,
        /aws lambda get-function --function-name buddy-system finds it: this script is for a fresh account; `tsx deploy\.ts efs` reuses what exists/,
      )

      await moto.reset()
      await moto.answerInvocations([lambdaError(new Error('database or disk is full'))])
      const failed = await bash(script)
      assert.equal(failed.code, 1, failed.output)
      assert.match(
        failed.output,
        /buddy-system-db-seeder failed: \{"errorType": ?"Error", ?"errorMessage": ?"database or disk is full"/,
      )
      assert.doesNotMatch(failed.output, /The API is at/)

      // rds: IAM authentication, the role's connect policy, the master password to the seeder once.
      await moto.reset()
      await moto.answerInvocations([seederAnswer()])
      const onRds = await bash(join(work, 'deploy-rds.sh'))
      assert.equal(onRds.code, 0, onRds.output)
      const { DBInstances: [db] = [] } = await rds.send(
        new DescribeDBInstancesCommand({ DBInstanceIdentifier: 'buddy-system' }),
      )
      assert.equal(db.IAMDatabaseAuthenticationEnabled, true)
      const { PolicyDocument } = await iam.send(
        new GetRolePolicyCommand({ RoleName: 'buddy-system-lambda-execution-role', PolicyName: 'rds-db-connect' }),
      )
      assert.equal(
        JSON.parse(decodeURIComponent(PolicyDocument!)).Statement[0].Resource,
        `arn:aws:rds-db:us-east-1:123456789012:dbuser:${db.DbiResourceId}/buddy_api`,
      )
      const vars = (await fn('buddy-system')).Configuration?.Environment?.Variables ?? {}
      assert.deepEqual([vars.PG_AUTH, vars.PG_USERNAME, vars.PG_PASSWORD], ['iam', 'buddy_api', undefined])
      const [invoked] = invocations()
      const created = moto
        .requests()
        .filter((r) => operationOf(r) === 'CreateDBInstance')
        .map((r) => new URLSearchParams(r.body))
      assert.deepEqual(invoked.master, { username: 'postgres', password: created[0].get('MasterUserPassword') })
      assert.match(
        onRds.output,
        new RegExp(`The master password of the database, shown this once: ${invoked.master.password}`),
      )
    },
  )

  it(
    'plans with credentials: nothing for an unchanged deployment, a changed setting and what is missing as the writes they need; that script brings the deployment to what deploy.ts makes',
    { timeout: 240_000 },
    async () => {
      await seeding(1)
      assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
      /** The plan of `deploy.ts efs --dry-run`, saved to run, and the AWS writes in it (service and operation). */
      const plan = async (...flags: string[]) => {
        const before = moto.requests().length
        const child = run('deploy.ts', aws(moto.endpoint), ['efs', '--dry-run', ...flags], work)
        assert.equal(await child.exited, 0, child.output())
        assert.deepEqual(changes(moto.requests().slice(before)), [], 'a plan reads, and changes nothing')
        const text = child.stdout()
        writeFileSync(join(work, 'plan.sh'), text)
        execFileSync('bash', ['-n', join(work, 'plan.sh')])
        const writes = [...text.matchAll(/\baws (\w+) ([a-z0-9-]+)/g)]
          .map(([, service, op]) => `${service} ${op}`)
          .filter((call) => !/ (get|describe|list|wait)\b/.test(call))
        return { text, writes }
      }
      /** After the script ran: a deploy with the same flags finds nothing to change. */
      const settled = async (...flags: string[]) => {
        await seeding(1)
        const before = moto.requests().length
        const again = await deploy(moto.endpoint, 'efs', '--yes', ...flags)
        assert.equal(again.code, 0, again.output)
        assert.deepEqual(changes(moto.requests().slice(before)), [], 'deploy.ts finds what it would have made')
      }

      const unchanged = await plan()
      assert.deepEqual(unchanged.writes, [], unchanged.text)
      assert.match(unchanged.text, /^# What `tsx deploy\.ts efs` would change now/m)

      const memory = await plan('--memory', '2048')
      assert.deepEqual(memory.writes, [
        'lambda update-function-configuration',
        'lambda update-function-configuration',
        'lambda invoke',
        'lambda publish-version',
        'lambda update-alias',
      ])
      assert.match(
        memory.text,
        /update-function-configuration --function-name buddy-system --role \S+ .*--memory-size 2048/,
      )
      assert.match(memory.text, /"JWT_KEY":"'"\$\{JWT_KEY\}"/, 'the key stands as a variable')
      const key = (await fn('buddy-system')).Configuration?.Environment?.Variables?.JWT_KEY!
      assert.ok(!memory.text.includes(key), 'never the key itself')
      await moto.answerInvocations([seederAnswer('loaded before')])
      const ran = await bash(join(work, 'plan.sh'))
      assert.equal(ran.code, 0, ran.output)
      assert.equal((await fn('buddy-system')).Configuration?.MemorySize, 2048)
      assert.equal((await fn('buddy-system')).Configuration?.Environment?.Variables?.JWT_KEY, key, 'the same key')
      await settled('--memory', '2048')

      // Missing: the seeder's log group, the URL, and the access point (whose new ARN both functions then mount).
      await logs.send(new DeleteLogGroupCommand({ logGroupName: '/aws/lambda/buddy-system-db-seeder' }))
      await lambda.send(new DeleteFunctionUrlConfigCommand({ FunctionName: 'buddy-system', Qualifier: 'live' }))
      const { AccessPoints: [point] = [] } = await efs.send(new DescribeAccessPointsCommand({}))
      await efs.send(new DeleteAccessPointCommand({ AccessPointId: point.AccessPointId }))
      const missing = await plan('--memory', '2048')
      assert.deepEqual(missing.writes, [
        'efs create-access-point',
        'iam put-role-policy', // the role may mount through the new access point, and no other
        'lambda update-function-configuration',
        'logs create-log-group',
        'logs put-retention-policy',
        'lambda update-function-configuration',
        'lambda invoke',
        'lambda publish-version',
        'lambda update-alias',
        'lambda create-function-url-config',
      ])
      assert.match(missing.text, /"FileSystemConfigs".*|--file-system-configs \$'\[\{"Arn":"'"\$\{ACCESS_POINT_ARN\}"/)
      await moto.answerInvocations([seederAnswer('loaded before')])
      const again = await bash(join(work, 'plan.sh'))
      assert.equal(again.code, 0, again.output)
      assert.match(again.output, /The API is at https:\/\/\w+\.lambda-url\.us-east-1\.on\.aws/)
      await settled('--memory', '2048')
    },
  )

  it('puts one mount target in each Availability Zone of --subnets, and wants two zones at least', async () => {
    const { Vpcs: [vpc] = [] } = await ec2.send(
      new DescribeVpcsCommand({ Filters: [{ Name: 'is-default', Values: ['true'] }] }),
    )
    const subnet = async (cidr: string, zone: string) =>
      (await ec2.send(new CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: cidr, AvailabilityZone: zone }))).Subnet!
        .SubnetId!
    const [a1, a2, b1] = [
      await subnet('172.31.96.0/24', 'us-east-1a'),
      await subnet('172.31.97.0/24', 'us-east-1a'),
      await subnet('172.31.98.0/24', 'us-east-1b'),
    ]

    const oneZone = await deploy(moto.endpoint, 'rds', '--yes', '--subnets', `${a1},${a2}`)
    assert.equal(oneZone.code, 1)
    assert.match(
      oneZone.output,
      /network failed: found subnets subnet-\w+, subnet-\w+ in vpc-\w+, all in us-east-1a: RDS and EFS want subnets in two Availability Zones or more; pass --subnets/,
    )
    assert.deepEqual(
      changes(moto.requests()).filter((op) => op !== 'CreateSubnet'),
      [],
      'nothing was made',
    )

    const subnets = [a1, a2, b1].join(',')
    await moto.answerInvocations([seederAnswer(), seederAnswer('loaded before')])
    const made = await deploy(moto.endpoint, 'efs', '--yes', '--subnets', subnets)
    assert.equal(made.code, 0, made.output)
    const { FileSystems: [fs] = [] } = await efs.send(new DescribeFileSystemsCommand({ CreationToken: 'buddy-system' }))
    const { MountTargets = [] } = await efs.send(new DescribeMountTargetsCommand({ FileSystemId: fs.FileSystemId }))
    assert.deepEqual(MountTargets.map((t) => [t.AvailabilityZoneName, t.SubnetId]).sort(), [
      ['us-east-1a', [a1, a2].sort()[0]],
      ['us-east-1b', b1],
    ])
    assert.deepEqual(
      [...((await fn('buddy-system')).Configuration?.VpcConfig?.SubnetIds ?? [])].sort(),
      [a1, a2, b1].sort(),
      'the functions use all three',
    )
    const rerun = await deploy(moto.endpoint, 'efs', '--yes', '--subnets', subnets)
    assert.equal(rerun.code, 0, rerun.output)
    assert.equal(sent(/^POST \/2015-02-01\/mount-targets$/).length, 2, 'no mount target made twice')
  })

  it('leaves out an Availability Zone that EFS or Lambda does not support, saying so, while two zones remain', async () => {
    const { Subnets = [] } = await ec2.send(
      new DescribeSubnetsCommand({ Filters: [{ Name: 'default-for-az', Values: ['true'] }] }),
    )
    const zoneOf = new Map(Subnets.map((s) => [s.SubnetId!, s.AvailabilityZone!]))
    const zones = [...new Set(zoneOf.values())].sort()
    assert.ok(zones.length >= 4, `moto's default VPC has ${zones.length} zones`)
    const [efsRefuses, lambdaRefuses] = [zones[1], zones[2]]
    // AWS's answers: EFS names its error (https://docs.aws.amazon.com/efs/latest/ug/API_CreateMountTarget.html),
    // Lambda refuses the whole set without naming the zone.
    const placing = /^POST \/2015-03-31\/functions$|^PUT \/2015-03-31\/functions\/[\w-]+\/configuration$/
    const proxy = await startProxy(moto.endpoint, {
      refuse(op, _before, body) {
        if (op === 'POST /2015-02-01/mount-targets' && zoneOf.get(JSON.parse(body).SubnetId) === efsRefuses)
          return { status: 400, type: 'UnsupportedAvailabilityZone', message: 'Unsupported availability zone' }
        if (
          placing.test(op) &&
          JSON.parse(body).VpcConfig?.SubnetIds?.some((id: string) => zoneOf.get(id) === lambdaRefuses)
        )
          return {
            status: 400,
            type: 'InvalidParameterValueException',
            message:
              "The provided subnets contain availability zone Lambda doesn't support. Please use a different set of subnets.",
          }
      },
    })
    try {
      await seeding(2)
      const made = await deploy(proxy.endpoint, 'efs', '--yes')
      assert.equal(made.code, 0, made.output)
      assert.match(
        made.output,
        new RegExp(`leaving out Availability Zone ${efsRefuses} \\(subnet-\\w+\\): EFS does not support it`),
      )
      assert.match(
        made.output,
        new RegExp(`leaving out Availability Zone ${lambdaRefuses} \\(subnet-\\w+\\): Lambda does not support it`),
      )
      const others = [...zoneOf.keys()].filter((id) => ![efsRefuses, lambdaRefuses].includes(zoneOf.get(id)!)).sort()
      for (const name of ['buddy-system', 'buddy-system-db-seeder']) {
        const { Configuration, Tags } = await fn(name)
        assert.deepEqual([...(Configuration?.VpcConfig?.SubnetIds ?? [])].sort(), others, `${name}'s subnets`)
        assert.equal(Tags?.['buddy-system:zones-lambda-refuses'], lambdaRefuses, `${name} names the zone`)
      }
      const { FileSystems: [fs] = [] } = await efs.send(
        new DescribeFileSystemsCommand({ CreationToken: 'buddy-system' }),
      )
      const { MountTargets = [] } = await efs.send(new DescribeMountTargetsCommand({ FileSystemId: fs.FileSystemId }))
      assert.deepEqual(
        MountTargets.map((t) => t.AvailabilityZoneName).sort(),
        zones.filter((z) => z !== efsRefuses),
        "no mount target where EFS refused (Lambda's zone has one: it was made before Lambda refused)",
      )
      // The API's create, refused; the probe without the first zone left, refused; without Lambda's, made. The
      // seeder, made in the zones left at once.
      assert.equal(proxy.calls.filter((op) => op === 'POST /2015-03-31/functions').length, 4)

      // A rerun leaves both out again, asking Lambda nothing it refused, and changes nothing.
      const [calls, requests] = [proxy.calls.length, moto.requests().length]
      const rerun = await deploy(proxy.endpoint, 'efs', '--yes')
      assert.equal(rerun.code, 0, rerun.output)
      assert.deepEqual(
        proxy.calls.slice(calls).filter((op) => placing.test(op)),
        [],
        'no function placed again',
      )
      assert.deepEqual(changes(moto.requests().slice(requests)), [])
      assert.match(
        rerun.output,
        new RegExp(`leaving out Availability Zone ${lambdaRefuses} .*Lambda does not support it`),
      )
    } finally {
      await proxy.close()
    }

    // With two zones, none can go: the deploy stops, naming the zone and what to do.
    await moto.reset()
    const { Subnets: fresh = [] } = await ec2.send(
      new DescribeSubnetsCommand({ Filters: [{ Name: 'default-for-az', Values: ['true'] }] }),
    )
    for (const s of fresh) zoneOf.set(s.SubnetId!, s.AvailabilityZone!)
    const inZone = (zone: string) => fresh.find((s) => s.AvailabilityZone === zone)!.SubnetId!
    const two = [inZone(zones[0]), inZone(lambdaRefuses)].join(',')
    const refusing = await startProxy(moto.endpoint, {
      refuse: (op, _before, body) =>
        placing.test(op) &&
        JSON.parse(body).VpcConfig?.SubnetIds?.some((id: string) => zoneOf.get(id) === lambdaRefuses)
          ? {
              status: 400,
              type: 'InvalidParameterValueException',
              message:
                "The provided subnets contain availability zone Lambda doesn't support. Please use a different set of subnets.",
            }
          : undefined,
    })
    try {
      const stopped = await deploy(refusing.endpoint, 'rds', '--yes', '--subnets', two)
      assert.equal(stopped.code, 1)
      assert.match(
        stopped.output,
        /Lambda does not support one of the Availability Zones .* \(it does not say which\), and leaving out any one does not help: pass --subnets in two zones or more that it supports/,
      )
    } finally {
      await refusing.close()
    }
  })

  it('reserves --concurrency, keeps a reservation on a rerun, and goes on where the account cannot reserve it', async () => {
    await seeding(3)
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes', '--concurrency', '40')).code, 0)
    assert.equal(await reserved(), 40)
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
    assert.equal(await reserved(), 40, 'a rerun without --concurrency keeps it')
    // moto, as AWS, keeps 100 of the account's 1,000 unreserved: 950 is refused.
    const refused = await deploy(moto.endpoint, 'efs', '--yes', '--concurrency', '950')
    assert.equal(refused.code, 0, refused.output)
    assert.match(
      refused.output,
      /the account's concurrency is too small to reserve 950 for buddy-system: AWS keeps some unreserved\./,
    )
    assert.match(refused.output, /The API is at https:/)
    assert.equal(await reserved(), 40)
    const bad = await deploy(moto.endpoint, 'efs', '--yes', '--concurrency', 'lots')
    assert.equal(bad.code, 1)
    assert.match(bad.output, /--concurrency lots: use a whole number of 1 or more/)
  })

  it('gives a reused or given security group the rules it lacks', async () => {
    await seeding(3)
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
    const [group] = await securityGroup()
    await ec2.send(
      new RevokeSecurityGroupIngressCommand({
        GroupId: group.GroupId,
        IpPermissions: [
          { IpProtocol: 'tcp', FromPort: 5432, ToPort: 5432, UserIdGroupPairs: [{ GroupId: group.GroupId }] },
        ],
      }),
    )
    const reused = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(reused.code, 0, reused.output)
    assert.match(reused.output, new RegExp(`updated: security group ${group.GroupId}: ports 5432 from itself`))
    const ports = async (id: string) =>
      (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [id] })))
        .SecurityGroups![0].IpPermissions!.filter((p) => p.UserIdGroupPairs?.some((pair) => pair.GroupId === id))
        .map((p) => p.FromPort)
        .sort()
    assert.deepEqual(await ports(group.GroupId!), [2049, 5432])

    const { Vpcs: [vpc] = [] } = await ec2.send(
      new DescribeVpcsCommand({ Filters: [{ Name: 'is-default', Values: ['true'] }] }),
    )
    const mine = (
      await ec2.send(new CreateSecurityGroupCommand({ GroupName: 'mine', Description: 'mine', VpcId: vpc.VpcId }))
    ).GroupId!
    await ec2.send(
      new AuthorizeSecurityGroupIngressCommand({
        GroupId: mine,
        IpPermissions: [{ IpProtocol: 'tcp', FromPort: 2049, ToPort: 2049, UserIdGroupPairs: [{ GroupId: mine }] }],
      }),
    )
    const given = await deploy(moto.endpoint, 'rds', '--yes', '--security-group', mine)
    assert.equal(given.code, 0, given.output)
    assert.deepEqual(await ports(mine), [2049, 5432])
    assert.deepEqual((await fn('buddy-system')).Configuration?.VpcConfig?.SecurityGroupIds, [mine])
    const elsewhere = await deploy(moto.endpoint, 'rds', '--yes', '--security-group', 'sg-0123456789abcdef0')
    assert.equal(elsewhere.code, 1)
    assert.match(elsewhere.output, /--security-group sg-0123456789abcdef0: no such security group/)
  })

  it("waits only for its own functions' network interfaces: another's, the other scenario's, a given group's rules", async () => {
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
    const [group] = await securityGroup()
    const subnet = (await fn('buddy-system')).Configuration!.VpcConfig!.SubnetIds![0]
    const eni = async (Description: string, groupId = group.GroupId!) =>
      (await ec2.send(new CreateNetworkInterfaceCommand({ SubnetId: subnet, Groups: [groupId], Description })))
        .NetworkInterface!.NetworkInterfaceId!
    // Another app's function shares the group (Lambda shares interfaces), and an RDS instance a move left.
    const theirs = await eni('AWS Lambda VPC ENI-someone-elses-app-7c4ba1e2-1f6e-4a4b-9d55-0a1b2c3d4e5f')
    const database = await eni('RDSNetworkInterface')
    const before = Date.now()
    await backedUp()
    const held = await deploy(moto.endpoint, 'destroy', 'efs', '--yes') // the default: wait up to 45 minutes
    assert.equal(held.code, 1, held.output)
    assert.ok(Date.now() - before < 120_000, 'no wait for what is not ours')
    assert.match(held.output, new RegExp(`Left: security group ${group.GroupId}, in use by what is not this destroy's`))
    assert.match(held.output, new RegExp(`${theirs}, of another Lambda function \\(someone-elses-app\\): not ours`))
    assert.match(held.output, new RegExp(`${database}, of an RDS instance: tsx deploy.ts destroy rds --yes removes it`))
    assert.match(
      held.output,
      /removed: .*role buddy-system-lambda-execution-role/,
      'our functions are gone: the role goes',
    )
    for (const id of [theirs, database]) await ec2.send(new DeleteNetworkInterfaceCommand({ NetworkInterfaceId: id }))
    await backedUp()
    assert.equal((await deploy(moto.endpoint, 'destroy', 'efs', '--yes')).code, 0)
    assert.deepEqual(await securityGroup(), [])

    // A given group is not ours: it keeps its own rules, loses the two a deploy added, and the rerun hint names it.
    const { Vpcs: [vpc] = [] } = await ec2.send(
      new DescribeVpcsCommand({ Filters: [{ Name: 'is-default', Values: ['true'] }] }),
    )
    const mine = (
      await ec2.send(new CreateSecurityGroupCommand({ GroupName: 'mine', Description: 'mine', VpcId: vpc.VpcId }))
    ).GroupId!
    const own = { IpProtocol: 'tcp', FromPort: 443, ToPort: 443, UserIdGroupPairs: [{ GroupId: mine }] }
    await ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: mine, IpPermissions: [own] }))
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes', '--security-group', mine)).code, 0)
    const ports = async () =>
      (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [mine] })))
        .SecurityGroups![0].IpPermissions!.map((p) => p.FromPort)
        .sort()
    assert.deepEqual(await ports(), [2049, 443, 5432])
    const lambdaEni = await eni('AWS Lambda VPC ENI-buddy-system-0f1e2d3c', mine)
    await backedUp()
    const waiting = await deploy(
      moto.endpoint,
      'destroy',
      'efs',
      '--yes',
      '--security-group',
      mine,
      '--wait-minutes',
      '0',
    )
    assert.equal(waiting.code, 1)
    assert.match(
      waiting.output,
      new RegExp(`Run \`tsx deploy.ts destroy efs --security-group ${mine} --yes\` again later`),
    )
    await ec2.send(new DeleteNetworkInterfaceCommand({ NetworkInterfaceId: lambdaEni }))
    await backedUp()
    const done = await deploy(moto.endpoint, 'destroy', 'efs', '--yes', '--security-group', mine)
    assert.equal(done.code, 0, done.output)
    assert.match(
      done.output,
      new RegExp(`security group ${mine} \\(yours, kept\\): the rules for ports 2049, 5432 from itself`),
    )
    assert.deepEqual(await ports(), [443], 'its own rule stays')
  })

  it("keeps the role while the functions' network interfaces hold the security group, and finishes on a later run", async () => {
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
    const [group] = await securityGroup()
    const subnet = (await fn('buddy-system')).Configuration!.VpcConfig!.SubnetIds![0]
    // What Lambda leaves for a while after DeleteFunction: its network interface in the functions' group.
    const { NetworkInterface: eni } = await ec2.send(
      new CreateNetworkInterfaceCommand({
        SubnetId: subnet,
        Groups: [group.GroupId!],
        Description: 'AWS Lambda VPC ENI-buddy-system-0f1e2d3c',
      }),
    )
    const first = await deploy(moto.endpoint, 'destroy', 'rds', '--yes', '--wait-minutes', '0')
    assert.equal(first.code, 1, first.output)
    assert.match(
      first.output,
      new RegExp(
        `Left: security group ${group.GroupId}, still in use by network interfaces that AWS has not released yet,\\s+and role buddy-system-lambda-execution-role, which Lambda needs to delete them`,
      ),
    )
    assert.ok(
      await iam.send(new GetRoleCommand({ RoleName: 'buddy-system-lambda-execution-role' })),
      'the role is kept',
    )
    assert.equal((await securityGroup()).length, 1)
    assert.deepEqual((await lambda.send(new ListFunctionsCommand({}))).Functions, [])

    await ec2.send(new DeleteNetworkInterfaceCommand({ NetworkInterfaceId: eni!.NetworkInterfaceId }))
    const second = await deploy(moto.endpoint, 'destroy', 'rds', '--yes')
    assert.equal(second.code, 0, second.output)
    assert.match(
      second.output,
      new RegExp(`removed: security group ${group.GroupId}, role buddy-system-lambda-execution-role`),
    )
    assert.deepEqual(await securityGroup(), [])
    await assert.rejects(
      iam.send(new GetRoleCommand({ RoleName: 'buddy-system-lambda-execution-role' })),
      /NoSuchEntity|cannot be found/,
    )
  })

  it('stops before calling AWS in a region without EFS for Lambda, naming it', async () => {
    const { code, output } = await deploy(moto.endpoint, 'efs', '--yes', '--region', 'ca-west-1')
    assert.equal(code, 1)
    assert.match(
      output,
      /region failed: ca-west-1, Canada West \(Calgary\), does not offer EFS for Lambda: deploy rds there, or efs in another region/,
    )
    assert.deepEqual(moto.requests(), [])
  })

  it('keeps the logs --log-retention days, sets CORS_ORIGINS from --cors-origins, and keeps both on a rerun', async () => {
    await seeding(2)
    assert.equal(
      (
        await deploy(
          moto.endpoint,
          'efs',
          '--yes',
          '--log-retention',
          '30',
          '--cors-origins',
          'https://shelter.example, http://localhost:5173',
        )
      ).code,
      0,
    )
    assert.equal((await logGroup('/aws/lambda/buddy-system'))?.retentionInDays, 30)
    const cors = async () => (await fn('buddy-system')).Configuration?.Environment?.Variables?.CORS_ORIGINS
    assert.equal(await cors(), 'https://shelter.example,http://localhost:5173')
    assert.equal((await fn('buddy-system-db-seeder')).Configuration?.Environment?.Variables?.CORS_ORIGINS, undefined)
    const rerun = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(rerun.code, 0, rerun.output)
    assert.equal(await cors(), 'https://shelter.example,http://localhost:5173', 'kept')
    assert.equal((await logGroup('/aws/lambda/buddy-system'))?.retentionInDays, 14, 'the default again')
    assert.match(rerun.output, /updated: log group \/aws\/lambda\/buddy-system \(kept 14 days\)/)
    for (const [flag, value, message] of [
      [
        '--log-retention',
        '15',
        /--log-retention 15: CloudWatch Logs keeps logs for one of 1, 3, 5, 7, 14, 30, .*3653 days/,
      ],
      [
        '--cors-origins',
        'https://a.example/app',
        /--cors-origins: https:\/\/a\.example\/app is not an origin: write it as https:\/\/host or https:\/\/host:port, with no path/,
      ],
    ] as const) {
      const bad = await deploy(moto.endpoint, 'efs', '--yes', flag, value)
      assert.equal(bad.code, 1)
      assert.match(bad.output, message)
    }
  })

  it("logs in Lambda's JSON format at --log-level, on a new deployment and an older one, and keeps the level on a rerun", async () => {
    await seeding(5)
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
    const json = (fn: string, level = 'INFO', system = level) => ({
      LogFormat: 'JSON',
      ApplicationLogLevel: level,
      SystemLogLevel: system,
      LogGroup: `/aws/lambda/${fn}`,
    })
    assert.deepEqual(
      createdFunctions().map((f) => f.LoggingConfig),
      [json('buddy-system'), json('buddy-system-db-seeder')],
    )
    // An older deployment: Lambda's text format, as every function had before.
    for (const name of ['buddy-system', 'buddy-system-db-seeder'])
      await lambda.send(
        new UpdateFunctionConfigurationCommand({ FunctionName: name, LoggingConfig: { LogFormat: 'Text' } }),
      )
    let before = moto.requests().length
    const older = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(older.code, 0, older.output)
    const updates = () =>
      moto
        .requests()
        .slice(before)
        .filter((r) => r.method === 'PUT' && /\/configuration$/.test(r.path))
        .map((r) => [decodeURIComponent(r.path.split('/')[3]), JSON.parse(r.body).LoggingConfig])
    assert.deepEqual(updates(), [
      ['buddy-system', json('buddy-system')],
      ['buddy-system-db-seeder', json('buddy-system-db-seeder')],
    ])
    assert.match(older.output, /updated: .*function buddy-system \(LoggingConfig\)/)
    before = moto.requests().length
    const debug = await deploy(moto.endpoint, 'efs', '--yes', '--log-level', 'debug')
    assert.equal(debug.code, 0, debug.output)
    assert.deepEqual(updates(), [
      ['buddy-system', json('buddy-system', 'DEBUG')],
      ['buddy-system-db-seeder', json('buddy-system-db-seeder', 'DEBUG')],
    ])
    before = moto.requests().length
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
    assert.deepEqual(changes(moto.requests().slice(before)), [], 'the level kept: nothing to change')
    assert.equal((await fn('buddy-system')).Configuration?.LoggingConfig?.ApplicationLogLevel, 'DEBUG')
    before = moto.requests().length
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes', '--log-level', 'ERROR')).code, 0)
    assert.deepEqual(updates()[0], ['buddy-system', json('buddy-system', 'ERROR', 'WARN')])
    const bad = await deploy(moto.endpoint, 'efs', '--yes', '--log-level', 'loud')
    assert.equal(bad.code, 1)
    assert.match(bad.output, /--log-level loud: one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL/)
  })

  it('alerts by email: a topic, its subscription and the alarms made once, kept by later deploys, shown by status, removed by --alerts off and destroy', async () => {
    await seeding(3)
    const first = await deploy(moto.endpoint, 'efs', '--yes', '--alerts', 'ops@example.org')
    assert.equal(first.code, 0, first.output)
    assert.match(
      first.output,
      /ops@example\.org: AWS has sent a confirmation mail; alerts reach this address once its link is followed/,
    )
    assert.match(
      first.output,
      /created: .*metric filter buddy-system-5xx, topic buddy-system-alerts, subscription of ops@example\.org \(to confirm\), alarm buddy-system-errors, alarm buddy-system-5xx, alarm buddy-system-throttles/,
    )
    const topicArn = 'arn:aws:sns:us-east-1:123456789012:buddy-system-alerts'
    const { Subscriptions = [] } = await sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: topicArn }))
    assert.deepEqual(
      Subscriptions.map((s) => [s.Protocol, s.Endpoint]),
      [['email', 'ops@example.org']],
    )
    const { MetricAlarms = [] } = await cloudwatch.send(new DescribeAlarmsCommand({ AlarmNamePrefix: 'buddy-system-' }))
    const described = MetricAlarms.map((a) => [
      a.AlarmName,
      a.Namespace,
      a.MetricName,
      a.Statistic,
      a.ComparisonOperator,
      a.Threshold,
      a.AlarmActions,
    ])
    assert.deepEqual(described.sort(), [
      ['buddy-system-5xx', 'buddy-system', '5xx', 'Sum', 'GreaterThanOrEqualToThreshold', 5, [topicArn]],
      ['buddy-system-errors', 'AWS/Lambda', 'Errors', 'Sum', 'GreaterThanOrEqualToThreshold', 1, [topicArn]],
      ['buddy-system-throttles', 'AWS/Lambda', 'Throttles', 'Sum', 'GreaterThanOrEqualToThreshold', 1, [topicArn]],
    ])
    // The 5xx count comes from the request lines: the filter pattern reads the JSON line's message.
    const { metricFilters = [] } = await logs.send(
      new DescribeMetricFiltersCommand({ logGroupName: '/aws/lambda/buddy-system' }),
    )
    assert.deepEqual(
      metricFilters.map((f) => [
        f.filterName,
        f.filterPattern,
        f.metricTransformations?.[0].metricNamespace,
        f.metricTransformations?.[0].metricName,
      ]),
      [['buddy-system-5xx', '{ $.message.status >= 500 }', 'buddy-system', '5xx']],
    )
    // Kept: a deploy without --alerts, and one with the same address, change nothing.
    for (const flags of [[], ['--alerts', 'ops@example.org']] as string[][]) {
      const before: number = moto.requests().length
      const rerun = await deploy(moto.endpoint, 'efs', '--yes', ...flags)
      assert.equal(rerun.code, 0, rerun.output)
      assert.deepEqual(changes(moto.requests().slice(before)), [], `rerun with ${flags.join(' ') || 'no flag'}`)
    }
    await answerStatus()
    const status = await deploy(moto.endpoint, 'status', 'efs')
    assert.equal(status.code, 0, status.output)
    assert.match(status.output, /Alerts to ops@example\.org \((confirmed|not confirmed yet: see the mail from AWS)\):/)
    for (const alarm of ['errors', '5xx', 'throttles'])
      assert.match(status.output, new RegExp(`[✔·] buddy-system-${alarm} +(OK|INSUFFICIENT_DATA)`))
    // Another address: subscribed, the former one unsubscribed.
    await seeding(2)
    const other = await deploy(moto.endpoint, 'efs', '--yes', '--alerts', 'shelter@example.org')
    assert.equal(other.code, 0, other.output)
    const now = await sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: topicArn }))
    assert.deepEqual(
      now.Subscriptions?.map((s) => s.Endpoint),
      ['shelter@example.org'],
    )
    const off = await deploy(moto.endpoint, 'efs', '--yes', '--alerts', 'off')
    assert.equal(off.code, 0, off.output)
    assert.match(
      off.output,
      /removed: alarm buddy-system-errors, alarm buddy-system-5xx, alarm buddy-system-throttles, topic buddy-system-alerts/,
    )
    assert.deepEqual((await cloudwatch.send(new DescribeAlarmsCommand({}))).MetricAlarms, [])
    assert.match(
      (await deploy(moto.endpoint, 'status', 'efs')).output,
      /No alerts: `tsx deploy\.ts efs --alerts you@example\.org`/,
    )
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes', '--alerts', 'ops@example.org')).code, 0)
    await backedUp()
    const destroyed = await deploy(moto.endpoint, 'destroy', 'efs', '--yes')
    assert.equal(destroyed.code, 0, destroyed.output)
    assert.match(
      destroyed.output,
      /removed: alarm buddy-system-errors, alarm buddy-system-5xx, alarm buddy-system-throttles, topic buddy-system-alerts, /,
    )
    assert.deepEqual((await cloudwatch.send(new DescribeAlarmsCommand({}))).MetricAlarms, [])
    assert.deepEqual((await sns.send(new ListTopicsCommand({}))).Topics, [])
    const left = await logs.send(new DescribeMetricFiltersCommand({ logGroupName: '/aws/lambda/buddy-system' }))
    assert.deepEqual(left.metricFilters, [], 'the metric filter went with its log group')
    for (const [value, message] of [
      ['ops', /--alerts ops: ops is not an email address \(or write --alerts off\)/],
      ['', /--alerts: an email address, or off/],
    ] as const) {
      const bad = await deploy(moto.endpoint, 'efs', '--yes', '--alerts', value)
      assert.equal(bad.code, 1)
      assert.match(bad.output, message)
    }
    assert.match(
      (await deploy(moto.endpoint, 'status', 'efs', '--alerts', 'off')).output,
      /--alerts goes with a deploy/,
    )
  })

  it('staff: a first deploy says there is no staff; the seeder makes a registered user staff, takes it back, and names an unknown user', async () => {
    await moto.answerInvocations([seederAnswer()])
    const first = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(first.code, 0, first.output)
    assert.match(
      first.output,
      /There is no staff yet: nobody can add or change animals\. .*\n.*make them staff: tsx deploy\.ts staff efs USERNAME/,
    )
    await moto.answerInvocations(
      // After the deploy's own set-up of the database, which the first answer is.
      (
        await realSeederAnswers([
          {},
          { staff: { username: 'reggie', revoke: false } },
          { staff: { username: 'reggie', revoke: true } },
          { staff: { username: 'nobody', revoke: false } },
        ])
      ).slice(1),
    )
    const before = changes(moto.requests()).length
    const invoked = () =>
      moto
        .requests()
        .filter((r) => /\/functions\/buddy-system-db-seeder\/invocations$/.test(r.path))
        .map((r) => JSON.parse(r.body))
    const granted = await deploy(moto.endpoint, 'staff', 'efs', 'reggie')
    assert.equal(granted.code, 0, granted.output)
    assert.match(granted.output, /^reggie is staff now; staff: reggie$/m)
    const revoked = await deploy(moto.endpoint, 'staff', 'efs', 'reggie', '--revoke')
    assert.equal(revoked.code, 0, revoked.output)
    assert.match(revoked.output, /^reggie is no longer staff; no staff yet: nobody can change animals$/m)
    const unknown = await deploy(moto.endpoint, 'staff', 'efs', 'nobody')
    assert.equal(unknown.code, 1)
    assert.match(
      unknown.output,
      /staff of buddy-system \(efs\) failed: the seeder failed: UnknownUser: there is no user named "nobody" in SQLite .*: nothing changed/,
    )
    assert.deepEqual(invoked().slice(-3), [
      { staff: { username: 'reggie', revoke: false } },
      { staff: { username: 'reggie', revoke: true } },
      { staff: { username: 'nobody', revoke: false } },
    ])
    assert.equal(changes(moto.requests()).length, before, 'no AWS resource changes: only the invocations')
    const usage = await deploy(moto.endpoint, 'staff', 'efs')
    assert.equal(usage.code, 1)
    assert.match(usage.output, /expected .*staff efs\|rds USERNAME/)
    assert.match(
      (await deploy(moto.endpoint, 'status', 'efs', '--revoke')).output,
      /--revoke goes with `tsx deploy\.ts staff/,
    )
    await backedUp()
    assert.equal((await deploy(moto.endpoint, 'destroy', 'efs', '--yes')).code, 0)
    const gone = await deploy(moto.endpoint, 'staff', 'efs', 'reggie')
    assert.match(gone.output, /function buddy-system-db-seeder does not exist: deploy first/)
  })

  it('status: every resource and the health check after a deploy (exit 0), what is missing after a removal or destroy (exit 1)', async () => {
    await moto.answerInvocations([seederAnswer()])
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
    const url = (await lambda.send(new GetFunctionUrlConfigCommand({ FunctionName: 'buddy-system' }))).FunctionUrl!
    await answerStatus()
    const before = changes(moto.requests()).length
    const ok = await deploy(moto.endpoint, 'status', 'efs')
    assert.equal(ok.code, 0, ok.output)
    for (const line of [
      /✔ role buddy-system-lambda-execution-role +AWSLambdaVPCAccessExecutionRole, efs-client/,
      /✔ security group sg-\w+/,
      /✔ file system fs-\w+ +available/,
      /✔ mount targets +6: us-east-1a available, us-east-1b available/,
      /✔ access point fsap-\w+ +available/,
      /✔ function buddy-system +nodejs24\.x, arm64, 1024 MB, concurrency 10, \d+\.\d KB, changed \S+/,
      /✔ function buddy-system-db-seeder +nodejs24\.x, arm64, 1024 MB, concurrency unreserved/,
      new RegExp(`✔ versions +1 \\(live\\); live: 1, schema ${SCHEMA_VERSION}`),
      new RegExp(`✔ URL +${url}`),
      /✔ GET \/greet +200 in \d+ ms: \{"greeting":"hello to nobody"\}/,
      /! staff +none yet: nobody can add or change animals \(tsx deploy\.ts staff efs USERNAME\)/,
      new RegExp(`All there\\. The API is at ${url}`),
    ])
      assert.match(ok.output, line)
    assert.equal(changes(moto.requests()).length, before, 'status changes nothing')
    const invoked = moto
      .requests()
      .filter((r) => /\/functions\/buddy-system\/invocations$/.test(r.path))
      .at(-1)!
    assert.equal(invoked.query.get('Qualifier'), 'live')
    assert.deepEqual([JSON.parse(invoked.body).version, JSON.parse(invoked.body).rawPath], ['2.0', '/greet'])

    const { AccessPoints: [point] = [] } = await efs.send(new DescribeAccessPointsCommand({}))
    await efs.send(new DeleteAccessPointCommand({ AccessPointId: point.AccessPointId }))
    const gone = await deploy(moto.endpoint, 'status', 'efs')
    assert.equal(gone.code, 1)
    assert.match(gone.output, /✘ access point buddy-system-lambda +missing/)
    // moto runs no code: with no answer queued, it sends the event back. Status shows what came.
    assert.match(
      gone.output,
      /GET \/greet +answered in \d+ ms, not as the API answers: \{"version":"2\.0","routeKey":"\$default","rawPath":"\/greet"/,
    )
    assert.match(
      gone.output,
      /\? staff +the seeder did not say: the seeder answered what deploy\.ts cannot read \(its staff list expected\): \{staff\}/,
    )
    assert.match(
      gone.output,
      /Not all there: access point buddy-system-lambda\. `tsx deploy\.ts efs` makes what is missing\./,
    )

    await backedUp()
    assert.equal((await deploy(moto.endpoint, 'destroy', 'efs', '--yes')).code, 0)
    const destroyed = await deploy(moto.endpoint, 'status', 'efs')
    assert.equal(destroyed.code, 1)
    assert.match(
      destroyed.output,
      /Not all there: role buddy-system-lambda-execution-role, security group, file system, function buddy-system, function buddy-system-db-seeder\./,
    )
  })

  it("status: the last 24 h of the API's and the file system's metrics, a chart each, in one GetMetricData call per resource", async () => {
    const HOUR = 3_600_000
    if (HOUR - (Date.now() % HOUR) < 60_000) await new Promise((r) => setTimeout(r, HOUR - (Date.now() % HOUR) + 1000))
    await moto.answerInvocations([seederAnswer()])
    const deployed = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(deployed.code, 0, deployed.output)
    const fsId = (await efs.send(new DescribeFileSystemsCommand({ CreationToken: 'buddy-system' }))).FileSystems![0]
      .FileSystemId!
    // 24 columns of an hour, the last one the hour now under way.
    const start = Math.ceil(Date.now() / HOUR) * HOUR - 24 * HOUR
    const at = (column: number) => new Date(start + column * HOUR + 60_000)
    const fn = [{ Name: 'FunctionName', Value: 'buddy-system' }]
    const datum = (MetricName: string, column: number, value: number, Dimensions = fn): MetricDatum => ({
      MetricName,
      Dimensions,
      Timestamp: at(column),
      Value: value,
    })
    const hours = Array.from({ length: 24 }, (_, c) => c)
    const put = (Namespace: string, MetricData: MetricDatum[]) =>
      cloudwatch.send(new PutMetricDataCommand({ Namespace, MetricData }))
    await put('AWS/Lambda', [
      ...hours.filter((c) => c !== 5).map((c) => datum('Invocations', c, c === 20 ? 40 : 10)), // hour 5: no data
      ...hours.map((c) => datum('Errors', c, c === 20 ? 2 : 0)),
      ...hours.map((c) => datum('ConcurrentExecutions', c, c === 20 ? 3 : 1)),
      { MetricName: 'Duration', Dimensions: fn, Timestamp: at(20), Values: [5, 10, 200], Counts: [50, 40, 10] },
    ])
    await put('buddy-system', [{ MetricName: '5xx', Timestamp: at(20), Value: 3 }])
    const total = [
      { Name: 'FileSystemId', Value: fsId },
      { Name: 'StorageClass', Value: 'Total' },
    ]
    await put('AWS/EFS', [datum('StorageBytes', 22, 6144, total), datum('StorageBytes', 23, 12288, total)])
    await answerStatus()
    const before = moto.requests().length
    const status = await deploy(moto.endpoint, 'status', 'efs')
    assert.equal(status.code, 0, status.output)
    const chart = (cells: Record<number, string>, rest: string) => hours.map((c) => cells[c] ?? rest).join('')
    const printed = status.output.split('\n').filter((l) => /^  \S.* [▁▂▃▄▅▆▇█·]{24}  /.test(l))
    assert.deepEqual(printed, [
      `  invocations              ${chart({ 5: '·', 20: '█' }, '▃')}  260 in all`,
      `  errors                   ${chart({ 20: '█' }, '▁')}  2 in all`,
      `  5xx answers              ${chart({ 20: '█' }, '·')}  3 in all`,
      `  throttles                ${chart({}, '·')}  no data`,
      `  duration p50             ${chart({ 20: '█' }, '·')}  5.0 ms over all`,
      `  duration p99             ${chart({ 20: '█' }, '·')}  200 ms over all`,
      `  concurrent executions    ${chart({ 20: '█' }, '▄')}  3 at most`, // 1 of 3: a third of the way up
      `  file system size         ${chart({ 22: '▅', 23: '█' }, '·')}  12.0 KB now`,
    ])
    assert.match(status.output, /Health, the last 24 h \(a column per 1 h, oldest first; · no data\):/)
    const asked = moto
      .requests()
      .slice(before)
      .filter((r) => operationOf(r) === 'GetMetricData')
      .map((r) =>
        JSON.parse(r.body).MetricDataQueries.map((q: any) => `${q.MetricStat.Metric.MetricName} ${q.MetricStat.Stat}`),
      )
    assert.deepEqual(asked, [
      [
        'Invocations Sum',
        'Errors Sum',
        '5xx Sum',
        'Throttles Sum',
        // Duration p50 and p99, hourly and over the whole span, in the same call: the proxy answers those (moto.ts).
        'ConcurrentExecutions Maximum',
      ],
      ['StorageBytes Average'],
    ])
  })

  it("status on rds: the instance's CPU, connections and free storage beside the API's figures", async () => {
    await moto.answerInvocations([seederAnswer()])
    const deployed = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(deployed.code, 0, deployed.output)
    const HOUR = 3_600_000
    const start = Math.ceil(Date.now() / HOUR) * HOUR - 24 * HOUR
    const db = [{ Name: 'DBInstanceIdentifier', Value: 'buddy-system' }]
    const MetricData = [22, 23].flatMap((column, i) => [
      { MetricName: 'CPUUtilization', Dimensions: db, Timestamp: new Date(start + column * HOUR), Value: [12, 48][i] },
      {
        MetricName: 'DatabaseConnections',
        Dimensions: db,
        Timestamp: new Date(start + column * HOUR),
        Value: [2, 4][i],
      },
      {
        MetricName: 'FreeStorageSpace',
        Dimensions: db,
        Timestamp: new Date(start + column * HOUR),
        Value: [19.5e9, 19.4e9][i],
      },
    ])
    await cloudwatch.send(new PutMetricDataCommand({ Namespace: 'AWS/RDS', MetricData }))
    await answerStatus()
    const before = moto.requests().length
    const status = await deploy(moto.endpoint, 'status', 'rds')
    assert.equal(status.code, 0, status.output)
    const dots = '·'.repeat(22)
    assert.match(status.output, new RegExp(`  database CPU +${dots}▃█  48 % at most\n`))
    assert.match(status.output, new RegExp(`  database connections +${dots}▅█  4 at most\n`))
    assert.match(status.output, new RegExp(`  database free storage +${dots}██  19\.4 GB at least\n`))
    assert.match(status.output, /  invocations +·{24}  no data\n/)
    const asked = moto
      .requests()
      .slice(before)
      .filter((r) => operationOf(r) === 'GetMetricData')
      .map((r) => JSON.parse(r.body).MetricDataQueries.length)
    assert.deepEqual(
      asked,
      [5, 3],
      'one call for the function (less the 4 percentile queries the proxy answers), one for the instance',
    )
  })

  it(
    'logs: the events since --since, once each, in order; --follow picks up new ones and stops on Ctrl-C',
    { timeout: 60_000 },
    async () => {
      await seeding(1)
      assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
      const put = async (stream: string, messages: [number, string][]) => {
        await logs
          .send(new CreateLogStreamCommand({ logGroupName: '/aws/lambda/buddy-system', logStreamName: stream }))
          .catch(() => {})
        await logs.send(
          new PutLogEventsCommand({
            logGroupName: '/aws/lambda/buddy-system',
            logStreamName: stream,
            logEvents: messages.map(([timestamp, message]) => ({ timestamp, message })),
          }),
        )
      }
      const now = Date.now()
      await put('2026/12/01/[1]a', [
        [now - 3 * 3_600_000, 'GET /animals 200 3.1ms old'],
        [now - 20 * 60_000, 'GET /animals/1 200 2.0ms first'],
      ])
      await put('2026/12/01/[1]b', [
        [now - 10 * 60_000, 'GET /animals/2 404 1.2ms second'],
        [now - 60_000, 'POST /animals 201 9.9ms third'],
      ])
      const { code, output } = await deploy(moto.endpoint, 'logs', 'efs', '--since', '1h')
      assert.equal(code, 0, output)
      const printed = output.split('\n').filter((l) => /^\d{4}-\d\d-\d\dT.*ms (first|second|third|old)$/.test(l))
      assert.deepEqual(
        printed.map((l) => l.split(' ').at(-1)),
        ['first', 'second', 'third'],
        output,
      )
      assert.match(
        printed[0],
        new RegExp(`^${new Date(now - 20 * 60_000).toISOString()} GET /animals/1 200 2\\.0ms first$`),
      )
      assert.match(output, /\/aws\/lambda\/buddy-system, since /)
      assert.equal(
        (await deploy(moto.endpoint, 'logs', 'efs', '--since', '15m')).output.match(/ms (first|second|third)$/gm)
          ?.length,
        2,
      )
      const bad = await deploy(moto.endpoint, 'logs', 'efs', '--since', 'yesterday')
      assert.equal(bad.code, 1)
      assert.match(bad.output, /--since yesterday: use 15m, 1h, 2d/)

      const follow = run('deploy.ts', aws(moto.endpoint), ['logs', 'efs', '--since', '1h', '--follow'], work)
      await follow.waitFor(/third/, 30_000)
      await put('2026/12/01/[1]b', [[Date.now(), 'GET /greet 200 0.4ms fourth']])
      await follow.waitFor(/fourth/, 30_000)
      // A second container's line, written late with an earlier timestamp than the newest printed (issue 26).
      await put('2026/12/01/[2]c', [[Date.now() - 30_000, 'GET /animals 200 1.0ms late']])
      await follow.waitFor(/late/, 30_000)
      await new Promise((resolve) => setTimeout(resolve, 2500)) // a poll more, which must print nothing again
      follow.child.kill('SIGINT')
      assert.equal(await follow.exited, 0, follow.output())
      const lines = follow.output().match(/ms (first|second|third|fourth|late)$/gm) ?? []
      assert.deepEqual(
        lines.map((l) => l.split(' ').at(-1)),
        ['first', 'second', 'third', 'fourth', 'late'],
        'each once, in the order they came',
      )
    },
  )

  it("logs: the JSON log format's lines readably, --json as written, --filter as CloudWatch Logs' pattern", async () => {
    await seeding(1)
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
    const at = Date.now() - 5 * 60_000
    const time = (ms: number) => new Date(at + ms).toISOString()
    const id = 'c0ffee12-3456-4789-8abc-def012345678'
    // As the Node.js runtime and Lambda write them with LogFormat JSON (LogPatch.js; the Telemetry API's records).
    const lines = [
      { time: time(0), type: 'platform.start', record: { requestId: id, version: '7' } },
      {
        timestamp: time(1),
        level: 'INFO',
        requestId: id,
        message: {
          method: 'GET',
          route: '/animals/{animal_id}',
          status: 200,
          ms: 41.7,
          cold: true,
          source: '203.0.113.9',
        },
      },
      {
        timestamp: time(2),
        level: 'WARN',
        requestId: id,
        message: { what: 'failed login', username: 'reggie', source: '203.0.113.9' },
      },
      {
        timestamp: time(3),
        level: 'ERROR',
        requestId: id,
        message: {
          method: 'GET',
          route: '/animals',
          what: 'the database is unavailable',
          cause: { errorType: 'Error', errorMessage: 'connect ETIMEDOUT', stackTrace: ['Error: connect ETIMEDOUT'] },
        },
      },
      {
        time: time(4),
        type: 'platform.report',
        record: {
          requestId: id,
          metrics: {
            durationMs: 45.2,
            billedDurationMs: 46,
            memorySizeMB: 1024,
            maxMemoryUsedMB: 88,
            initDurationMs: 182.5,
          },
          status: 'success',
        },
      },
      { timestamp: time(5), level: 'INFO', requestId: id, message: 'a line of plain text' },
    ].map((line) => JSON.stringify(line))
    await logs.send(new CreateLogStreamCommand({ logGroupName: '/aws/lambda/buddy-system', logStreamName: 's' }))
    await logs.send(
      new PutLogEventsCommand({
        logGroupName: '/aws/lambda/buddy-system',
        logStreamName: 's',
        logEvents: lines.map((message, i) => ({ timestamp: at + i, message })),
      }),
    )
    const readable = await deploy(moto.endpoint, 'logs', 'efs', '--since', '1h')
    assert.equal(readable.code, 0, readable.output)
    assert.deepEqual(
      readable.output.split('\n').filter((l) => l.startsWith(time(0).slice(0, 10))),
      [
        `${time(0)} START version 7`,
        `${time(1)} INFO  c0ffee12 GET /animals/{animal_id} → 200 in 41.7 ms (cold start) from 203.0.113.9`,
        `${time(2)} WARN  c0ffee12 what=failed login username=reggie source=203.0.113.9`,
        `${time(3)} ERROR c0ffee12 method=GET route=/animals what=the database is unavailable cause=Error: connect ETIMEDOUT`,
        `${time(4)} REPORT 45.2 ms, billed 46 ms, 88 of 1024 MB, init 182.5 ms (cold start)`,
        `${time(5)} INFO  c0ffee12 a line of plain text`,
      ],
    )
    const json = await deploy(moto.endpoint, 'logs', 'efs', '--since', '1h', '--json')
    assert.deepEqual(
      json.output.split('\n').filter((l) => l.startsWith('{')),
      lines,
    )
    const before = moto.requests().length
    const pattern = '{ $.message.status >= 500 }'
    const filtered = await deploy(moto.endpoint, 'logs', 'efs', '--since', '1h', '--filter', pattern)
    assert.equal(filtered.code, 0, filtered.output)
    assert.match(filtered.output, /matching \{ \$\.message\.status >= 500 \}/)
    // moto lets every { ... } pattern through: what was asked of CloudWatch Logs is the test.
    const asked = moto
      .requests()
      .slice(before)
      .filter((r) => operationOf(r) === 'FilterLogEvents')
      .map((r) => JSON.parse(r.body).filterPattern)
    assert.deepEqual(asked, [pattern])
    const misplaced = await deploy(moto.endpoint, 'status', 'efs', '--json')
    assert.equal(misplaced.code, 1)
    assert.match(misplaced.output, /--filter and --json go with `tsx deploy\.ts logs efs\|rds`/)
  })

  it(
    'releases: a version per changed deploy with live on the newest, the URL on live, rollback, and old versions pruned',
    { timeout: 180_000 },
    async () => {
      await moto.answerInvocations(Array(6).fill(seederAnswer('loaded before')))
      const live = async () =>
        (await lambda.send(new GetAliasCommand({ FunctionName: 'buddy-system', Name: 'live' }))).FunctionVersion
      const published = async () =>
        ((await lambda.send(new ListVersionsByFunctionCommand({ FunctionName: 'buddy-system' }))).Versions ?? [])
          .filter((v) => v.Version !== '$LATEST')
          .map((v) => [v.Version, v.Description])
      assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
      const schema = `schema ${SCHEMA_VERSION}` // each version's description: the schema its code needs
      assert.deepEqual([await published(), await live()], [[['1', schema]], '1'])
      const qualified = moto.requests().filter((r) => /\/url$|\/policy$/.test(r.path) && r.method === 'POST')
      assert.equal(qualified.length, 3)
      assert.ok(
        qualified.every((r) => r.query.get('Qualifier') === 'live'),
        'the URL and both permissions belong to the alias',
      )

      const api = join(work, 'api.ts')
      const source = readFileSync(api, 'utf8')
      const edit = (greeting: string) => writeFileSync(api, source.replace("'hello to nobody'", `'${greeting}'`))
      try {
        edit('hello to somebody')
        const second = await deploy(moto.endpoint, 'rds', '--yes')
        assert.equal(second.code, 0, second.output)
        assert.deepEqual(
          [await published(), await live()],
          [
            [
              ['1', schema],
              ['2', schema],
            ],
            '2',
          ],
        )
        assert.match(second.output, /created: version 2/)
        assert.match(second.output, /updated: .*alias live: 1 → 2/)
        const before = moto.requests().length
        assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
        assert.deepEqual(changes(moto.requests().slice(before)), [], 'a rerun without changes publishes nothing')

        const back = await deploy(moto.endpoint, 'rollback', 'rds')
        assert.equal(back.code, 0, back.output)
        assert.ok(back.output.includes(`✔ live: version 2 (${schema}) → version 1 (${schema})`), back.output)
        assert.equal(await live(), '1')
        const nowhere = await deploy(moto.endpoint, 'rollback', 'rds')
        assert.equal(nowhere.code, 1)
        assert.match(nowhere.output, /version 1 is live, and no older one is kept \(versions: 1, 2\)/)
        assert.equal((await deploy(moto.endpoint, 'rollback', 'rds', '--to', '2')).code, 0)
        assert.equal(await live(), '2')
        assert.match(
          (await deploy(moto.endpoint, 'rollback', 'rds', '--to', '7')).output,
          /there is no version 7 \(versions: 1, 2\)/,
        )

        // A release whose migrations took the database one schema further: version 1 must not meet it.
        await lambda.send(
          new UpdateFunctionConfigurationCommand({ FunctionName: 'buddy-system', Description: 'by hand' }),
        )
        const v3 = await lambda.send(
          new PublishVersionCommand({ FunctionName: 'buddy-system', Description: `schema ${SCHEMA_VERSION + 1}` }),
        )
        await lambda.send(
          new UpdateAliasCommand({ FunctionName: 'buddy-system', Name: 'live', FunctionVersion: v3.Version }),
        )
        const refused = await deploy(moto.endpoint, 'rollback', 'rds', '--to', '1')
        assert.equal(refused.code, 1)
        assert.ok(
          refused.output.includes(
            `rollback failed: version 1 was built for ${schema}, and the database is at schema ${SCHEMA_VERSION + 1}: it would meet tables it does not know`,
          ),
          refused.output,
        )
        assert.equal(await live(), v3.Version)

        // The last deploy prunes: moto numbers a new version by the count of versions, so after a deletion it
        // would reuse a number, which AWS never does.
        for (const [greeting, keep] of [
          ['hello to a cat', '10'],
          ['hello to a dog', '2'],
        ]) {
          edit(greeting)
          const kept = await deploy(moto.endpoint, 'rds', '--yes', '--keep', keep)
          assert.equal(kept.code, 0, kept.output)
        }
        assert.deepEqual(
          (await published()).map(([v]) => v),
          ['4', '5'],
          'the last two kept',
        )
        assert.equal(await live(), '5')
      } finally {
        writeFileSync(api, source)
      }
    },
  )

  it('names an unknown option and prints the usage, with no stack trace', async () => {
    const { code, output } = await deploy(moto.endpoint, 'efs', '--anything')
    assert.equal(code, 1)
    assert.match(output, /✘ unknown option --anything\s+usage:\s+tsx deploy\.ts efs\|rds/)
    assert.doesNotMatch(output, /ReferenceError|\n\s+at /)
    assert.deepEqual(moto.requests(), [])
  })
})

// The zip as Lambda runs it: unzipped into an empty directory, under Node 24, with no node_modules anywhere.
const node24 = process.env.NODE24 || (Number(process.versions.node.split('.')[0]) >= 24 ? process.execPath : undefined)
if (!node24 && process.env.CI === 'true') throw new Error('CI=true and no Node 24: set NODE24 to its binary')

describe('the deployment package', { skip: node24 ? false : 'needs Node 24: set NODE24 to its binary' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'buddy-zip-'))
  after(() => rmSync(dir, { recursive: true, force: true }))

  before(async () => {
    const child = run(
      'deploy.ts',
      { AWS_REGION: undefined, AWS_DEFAULT_REGION: undefined },
      ['package', '--region', 'us-east-1'],
      work,
    )
    assert.equal(await child.exited, 0, child.output())
    assert.match(child.output(), /package: build\.zip \d+\.\d KB .*rds-ca\.pem 3 CAs of us-east-1/)
    const zip = readFileSync(join(work, 'build.zip'))
    assert.ok(zip.length < 300 * 1024, `build.zip is ${zip.length} bytes: the target is under 300 KB`)
    const files = unzipSync(zip)
    // zod's other locales (German, Spanish…) are left out of the bundle: they come with `import { z } from 'zod'`.
    const locales = /Zeichen|caracteres/.test(new TextDecoder().decode(files['api.mjs']))
    assert.ok(!locales, "api.mjs carries zod's locales: import zod/mini as a namespace, and only `en` from zod/locales")
    const names = Object.keys(files)
    assert.deepEqual(
      names.filter((f) => !/^chunk-\w+\.mjs$/.test(f)),
      ['api.mjs', 'fake_db.json', 'rds-ca.pem', 'seed.mjs'],
    )
    assert.deepEqual(names, [...names].sort(), 'entries in a fixed order')
    // Every chunk is imported by some other file: none is dead weight (esbuild writes one for an import() in code it
    // drops, https://github.com/evanw/esbuild/issues/3704).
    const code = names.filter((f) => f.endsWith('.mjs')).map((f) => [f, new TextDecoder().decode(files[f])])
    for (const chunk of names.filter((f) => f.startsWith('chunk-'))) {
      assert.ok(
        code.some(([f, text]) => f !== chunk && text.includes(`"./${chunk}"`)),
        `${chunk} is imported by no file`,
      )
    }
    mkdirSync(join(dir, 'task'))
    for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, 'task', name), data)
  })

  const lambdaRun = (code: string, env: Record<string, string>) =>
    execFileSync(node24!, ['--input-type=module', '-e', code], {
      cwd: join(dir, 'task'),
      env: {
        PATH: process.env.PATH,
        AWS_LAMBDA_FUNCTION_NAME: 'buddy-system',
        DB_PATH: join(dir, 'lambda.db'),
        ...env,
      },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    })

  it('answers 503 on a fresh SQLite file until seed.handler has migrated it, then GET /animals', () => {
    const event = JSON.stringify({
      version: '2.0',
      rawPath: '/animals',
      rawQueryString: 'limit=2',
      headers: {},
      requestContext: { http: { method: 'GET', path: '/animals' }, stage: '$default' },
      isBase64Encoded: false,
    })
    const code = `
      const api = await import('./api.mjs'), seed = await import('./seed.mjs')
      const list = async () => { const r = await api.handler(${event}); return [r.statusCode, JSON.parse(r.body)] }
      console.log(JSON.stringify([await list(), await seed.handler(), await list()]))`
    const out = lambdaRun(code, { JWT_KEY: '0123456789abcdef'.repeat(4) })
      .trim()
      .split('\n')
      .at(-1)!
    const [[beforeStatus, before], seeded, [afterStatus, after]] = JSON.parse(out)
    assert.equal(beforeStatus, 503)
    assert.deepEqual(before, { detail: 'Service Unavailable' })
    assert.equal(seeded.task, 'set up')
    assert.deepEqual(seeded.seed.added, { users: 8, animals: 16, fosters: 8, adoptions: 7 })
    assert.equal(afterStatus, 200)
    assert.deepEqual(after.meta, { count: 16, limit: 2, offset: 0 })
  })

  it("carries RDS's certificate authorities for the region: the current ones, each naming it", () => {
    const pem = readFileSync(join(dir, 'task', 'rds-ca.pem'), 'utf8')
    const certificates = pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n?/g) ?? []
    const subjects = certificates
      .map((c) => new X509Certificate(c))
      .map((c) => [/CN=(.*)/.exec(c.subject)![1], Date.parse(c.validTo) > Date.now(), c.ca])
    assert.deepEqual(subjects.map(([cn]) => cn).sort(), [
      'Amazon RDS us-east-1 Root CA ECC384 G1',
      'Amazon RDS us-east-1 Root CA RSA2048 G1',
      'Amazon RDS us-east-1 Root CA RSA4096 G1',
    ])
    assert.ok(
      subjects.every(([, valid, ca]) => valid && ca),
      'valid now, and CAs',
    )
  })

  /** The bundled seeder's answer to an event (read from `eventFile`, else {}), or what Lambda reports of the error it
   * throws (its name and message). */
  const bundledSeeder = (env: Record<string, string>, eventFile?: string) => {
    const event = eventFile
      ? `JSON.parse(process.getBuiltinModule('node:fs').readFileSync(${JSON.stringify(eventFile)}, 'utf8'))`
      : '{}'
    const out = lambdaRun(
      `const { handler } = await import('./seed.mjs')
      const answer = await handler(${event}).catch((e) => ({ errorType: e.name, errorMessage: e.message }))
      console.log(JSON.stringify(answer))`,
      env,
    )
    return JSON.parse(out.trim().split('\n').at(-1)!)
  }

  it('trusts a PostgreSQL server whose certificate chains to PG_SSLROOTCERT under verify-full, and refuses any other', async (t) => {
    const server = await startPostgres()
    if (typeof server === 'string') {
      if (process.env.CI === 'true') throw new Error(`CI=true and no PostgreSQL server: ${server}`)
      return t.skip(server)
    }
    try {
      // The test server's CA, in a bundle beside RDS's (a stand-in for an RDS instance's chain, whose key we lack).
      const rds = readFileSync(join(dir, 'task', 'rds-ca.pem'), 'utf8')
      writeFileSync(join(dir, 'with-server-ca.pem'), rds + readFileSync(server.env.PG_SSLROOTCERT, 'utf8'))
      const seedWith = (caFile: string) => {
        const env = {
          ...server.env,
          DB_LOCATION: 'rds',
          PG_DATABASE: 'postgres',
          PG_SSLMODE: 'verify-full',
          PG_SSLROOTCERT: caFile,
        }
        return bundledSeeder(env)
      }
      const trusted = seedWith(join(dir, 'with-server-ca.pem'))
      assert.equal(trusted.task, 'set up', JSON.stringify(trusted))
      const refused = seedWith(join(dir, 'task', 'rds-ca.pem'))
      assert.match(refused.errorMessage, /self[- ]signed certificate|unable to verify|certificate/)

      // PG_AUTH=iam, as deployed: the bundled signer makes a token, which this server (no RDS) refuses as a
      // password; the seeder then asks for the master password (NeedsMaster). A signer that failed to load would not.
      const env = {
        ...server.env,
        DB_LOCATION: 'rds',
        PG_AUTH: 'iam',
        PG_USERNAME: 'buddy_api',
        PG_PASSWORD: '',
        PG_DATABASE: 'postgres',
        PG_SSLMODE: 'verify-full',
        PG_SSLROOTCERT: join(dir, 'with-server-ca.pem'),
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
        AWS_SECRET_ACCESS_KEY: 'secret-for-the-test',
      }
      const withToken = bundledSeeder(env)
      assert.equal(withToken.errorType, 'NeedsMaster', JSON.stringify(withToken))
      assert.match(withToken.errorMessage, /password authentication failed for user "buddy_api"/)
    } finally {
      server.stop()
    }
  })

  // Node modules that built-ins load only when one of their exports is read (http.WebSocket, fs.promises,
  // crypto.webcrypto, util.parseArgs), as an `import` of the built-in reads them all (api.ts).
  const LAZY = [
    'internal/deps/undici/undici',
    'internal/fs/promises',
    'internal/crypto/webcrypto',
    'internal/util/parse_args/parse_args',
  ]
  const modulesAfter = (code: string, env: Record<string, string>): string[] => {
    const out = lambdaRun(`${code}\nconsole.log(JSON.stringify(process.moduleLoadList)); process.exit(0)`, env)
    return JSON.parse(out.trim().split('\n').at(-1)!)
  }
  const lazyLoaded = (modules: string[]) => LAZY.filter((name) => modules.includes(`NativeModule ${name}`))

  // Only the cold start: the local server's memory is no longer a target (issue 19), and it imports node:http and
  // node:fs plainly, which load undici and fs.promises.
  it("loads none of what Node's built-ins keep for later, nor node:crypto, on a cold start for a read", () => {
    const event = JSON.stringify({
      version: '2.0',
      rawPath: '/animals/1',
      rawQueryString: '',
      headers: {},
      requestContext: { http: { method: 'GET', path: '/animals/1' }, stage: '$default' },
      isBase64Encoded: false,
    })
    const env = { JWT_KEY: '0123456789abcdef'.repeat(4), DB_PATH: join(dir, 'lazy.db') }
    lambdaRun("await (await import('./seed.mjs')).handler()", env) // the deploy's seeder, in a process of its own
    const answer = `const { handler } = await import('./api.mjs'), { statusCode } = await handler(${event})
      if (statusCode !== 200) throw new Error(\`GET /animals/1 on the sample: \${statusCode}\`)`
    const coldStart = modulesAfter(answer, env)
    assert.deepEqual(lazyLoaded(coldStart), [])
    // node:crypto (50 modules) is for passwords, tokens and the local server's request IDs, not for a read.
    assert.ok(!coldStart.includes('NativeModule crypto'), 'a cold start for a read loaded node:crypto')
  })

  it('carries no common-password list: the seeder loads the one its event brings, and until then a new password gets 503', () => {
    const files = readdirSync(join(dir, 'task'))
    assert.deepEqual(
      files.filter((f) => readFileSync(join(dir, 'task', f), 'utf8').includes('iloveyou')),
      [],
      'no file of the package holds the list',
    )
    const env = { JWT_KEY: '0123456789abcdef'.repeat(4), DB_PATH: join(dir, 'common.db') }
    // The event as deploy.ts sends it, from a file: 200 KB is more than one argument of a command may hold.
    writeFileSync(join(dir, 'common-event.json'), JSON.stringify({ commonPasswords }))
    const event = (method: string, path: string, body?: object) =>
      JSON.stringify({
        version: '2.0',
        rawPath: path,
        rawQueryString: '',
        headers: { 'content-type': 'application/json' },
        requestContext: { http: { method, path, sourceIp: '192.0.2.1' }, stage: '$default' },
        isBase64Encoded: false,
        ...(body ? { body: JSON.stringify(body) } : {}),
      })
    const register = (password: string) =>
      event('POST', '/auth/registration', {
        username: `u${password.length}`,
        email: `u${password.length}@example.com`,
        password,
      })
    const statuses = () =>
      JSON.parse(
        lambdaRun(
          `const { handler } = await import('./api.mjs')
          const statuses = []
          for (const e of [${event('GET', '/animals/1')}, ${register('sunshine')}, ${register('kestrel harbour')}]) statuses.push((await handler(e)).statusCode)
          console.log(JSON.stringify(statuses))`,
          env,
        )
          .trim()
          .split('\n')
          .at(-1)!,
      )
    assert.match(bundledSeeder(env).summary, /no common passwords: new passwords are refused \(503\)/)
    assert.deepEqual(statuses(), [200, 503, 503], 'a read; no new password without the list')
    assert.match(
      bundledSeeder(env, join(dir, 'common-event.json')).summary,
      /; 17950 common passwords \(17950 added\)$/,
    )
    assert.deepEqual(statuses(), [200, 422, 200], 'a read; a common password refused; another taken')
  })

  it('stops the cold start when JWT_KEY is missing on Lambda', () => {
    assert.throws(() => lambdaRun(`await import('./api.mjs')`, {}), /JWT_KEY is not set/)
  })
})
