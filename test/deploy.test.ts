// deploy.ts end to end against moto_server on 127.0.0.1 (no real AWS here), and its package
// unzipped and run under Node 24 as the nodejs24.x runtime would. With CI=true nothing is skipped.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, beforeEach, describe, it } from 'node:test'
import { unzipSync, zipSync } from 'fflate'
import { EC2Client, DeleteSubnetCommand, DeleteVpcCommand, DescribeSecurityGroupsCommand, DescribeSubnetsCommand, DescribeVpcsCommand } from '@aws-sdk/client-ec2'
import { EFSClient, DescribeAccessPointsCommand, DescribeFileSystemsCommand, DescribeMountTargetsCommand } from '@aws-sdk/client-efs'
import { IAMClient, CreateRoleCommand, GetRoleCommand, ListAttachedRolePoliciesCommand } from '@aws-sdk/client-iam'
import { LambdaClient, CreateFunctionCommand, DeleteFunctionCommand, GetFunctionCommand, GetFunctionUrlConfigCommand, GetPolicyCommand, ListFunctionsCommand } from '@aws-sdk/client-lambda'
import { RDSClient, DescribeDBInstancesCommand } from '@aws-sdk/client-rds'
import { root, run } from './cli.ts'
import { changes, operationOf, startMoto, type Moto } from './moto.ts'

const moto = await startMoto()
if (typeof moto === 'string' && process.env.CI === 'true') throw new Error(`CI=true and the deploy tests cannot run: ${moto}`)

// A copy of the project to deploy from, so that a test may change its source and build/ stays out of the repository.
const work = mkdtempSync(join(tmpdir(), 'buddy-deploy-'))
for (const file of ['api.ts', 'db.ts', 'seed.ts', 'deploy.ts', 'fake_db.json', 'package.json']) cpSync(join(root, file), join(work, file))
symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'))
after(() => rmSync(work, { recursive: true, force: true }))

const aws = (endpoint: string) => ({
  AWS_ENDPOINT_URL: endpoint,
  AWS_ACCESS_KEY_ID: 'testing',
  AWS_SECRET_ACCESS_KEY: 'testing',
  AWS_REGION: 'us-east-1',
  AWS_EC2_METADATA_DISABLED: 'true', // never ask 169.254.169.254 for credentials
  AWS_PROFILE: undefined,
  PG_PASSWORD: undefined,
})

async function deploy(endpoint: string, ...args: string[]) {
  const child = run('deploy.ts', aws(endpoint), args, work)
  const code = await child.exited
  return { code, output: child.output() }
}

describe('deploy.ts against moto', { skip: typeof moto === 'string' ? moto : false }, () => {
  if (typeof moto === 'string') return
  const config = { endpoint: moto.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } }
  const lambda = new LambdaClient(config)
  const iam = new IAMClient(config)
  const efs = new EFSClient(config)
  const ec2 = new EC2Client(config)
  const rds = new RDSClient(config)
  after(() => moto.stop())
  beforeEach(() => moto.reset())

  const fn = (name: string) => lambda.send(new GetFunctionCommand({ FunctionName: name }))
  const securityGroup = async () =>
    (await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'group-name', Values: ['buddy-system'] }] }))).SecurityGroups ?? []
  const createdFunctions = () =>
    moto.requests().filter((r) => operationOf(r) === 'POST /2015-03-31/functions').map((r) => JSON.parse(r.body))

  async function assertFunctions(environment: (vars: Record<string, string>) => void) {
    const [group] = await securityGroup()
    for (const [name, handler, timeout] of [['buddy-system', 'api.handler', 10], ['buddy-system-db-seeder', 'seed.handler', 60]] as const) {
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
    const attached = await iam.send(new ListAttachedRolePoliciesCommand({ RoleName: 'buddy-system-lambda-execution-role' }))
    assert.deepEqual(attached.AttachedPolicies?.map((p) => p.PolicyName).sort(), policies.sort())

    const [group] = await securityGroup()
    assert.deepEqual(group.Tags, [{ Key: 'app', Value: 'buddy-system' }])
    const inbound = group.IpPermissions?.map((p) => [p.FromPort, p.UserIdGroupPairs?.[0]?.GroupId])
    assert.deepEqual(inbound?.sort(), [[2049, group.GroupId], [5432, group.GroupId]])

    const url = await lambda.send(new GetFunctionUrlConfigCommand({ FunctionName: 'buddy-system' }))
    assert.equal(url.AuthType, 'NONE')
    const policy = JSON.parse((await lambda.send(new GetPolicyCommand({ FunctionName: 'buddy-system' }))).Policy!)
    const statements = policy.Statement.map((s: any) => [s.Action, s.Principal, s.FunctionUrlAuthType ?? s.InvokedViaFunctionUrl])
    assert.deepEqual(statements.sort(), [['lambda:InvokeFunction', '*', true], ['lambda:InvokeFunctionUrl', '*', 'NONE']])
    return url.FunctionUrl!
  }

  it('deploys the efs scenario: role, network, file system, functions, URL, seed', async () => {
    const { code, output } = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(code, 0, output)
    const url = await assertCommon(['AWSLambdaBasicExecutionRole', 'AWSLambdaVPCAccessExecutionRole', 'AWSXRayDaemonWriteAccess', 'AmazonElasticFileSystemClientReadWriteAccess'])
    assert.match(output, new RegExp(`The API is at ${url}`))
    await assertFunctions((vars) => assert.equal(vars.DB_LOCATION, 'efs'))

    const { FileSystems: [fs] = [] } = await efs.send(new DescribeFileSystemsCommand({ CreationToken: 'buddy-system' }))
    assert.equal(fs.Encrypted, true)
    assert.deepEqual(fs.Tags?.find((t) => t.Key === 'app'), { Key: 'app', Value: 'buddy-system' })
    const { MountTargets = [] } = await efs.send(new DescribeMountTargetsCommand({ FileSystemId: fs.FileSystemId }))
    const subnets = (await fn('buddy-system')).Configuration?.VpcConfig?.SubnetIds ?? []
    assert.deepEqual(MountTargets.map((t) => t.SubnetId).sort(), [...subnets].sort())
    const { AccessPoints: [point] = [] } = await efs.send(new DescribeAccessPointsCommand({ FileSystemId: fs.FileSystemId }))
    assert.deepEqual(point.PosixUser, { Uid: 1000, Gid: 1000 })
    assert.deepEqual(point.RootDirectory?.CreationInfo, { OwnerUid: 1000, OwnerGid: 1000, Permissions: '0777' })
    // moto 5.2.1 keeps no FileSystemConfigs on a function: check what deploy.ts asked for instead.
    for (const created of createdFunctions()) {
      assert.deepEqual(created.FileSystemConfigs, [{ Arn: point.AccessPointArn, LocalMountPath: '/mnt/efs' }])
    }
    for (const line of ['package', 'credentials', 'network', 'role', 'file system (EFS)', 'functions', 'seed']) {
      assert.match(output, new RegExp(`✔ ${line.replace(/[()]/g, '\\$&')}.* \\(\\d+\\.\\ds\\)`))
    }
    assert.match(output, /created: security group sg-\w+, role buddy-system-lambda-execution-role, file system fs-\w+/)
  })

  it('creates nothing and uploads no code when run again, and keeps JWT_KEY', async () => {
    assert.equal((await deploy(moto.endpoint, 'efs', '--yes')).code, 0)
    const key = (await fn('buddy-system')).Configuration?.Environment?.Variables?.JWT_KEY
    const before = moto.requests().length
    const again = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(again.code, 0, again.output)
    const made = changes(moto.requests().slice(before))
    // The only change: moto forgets FileSystemConfigs (see above), so each function's mount is set again.
    assert.deepEqual(made, [
      'PUT /2015-03-31/functions/buddy-system/configuration',
      'PUT /2015-03-31/functions/buddy-system-db-seeder/configuration',
    ])
    assert.doesNotMatch(again.output, /created:/)
    assert.match(again.output, /reused: security group .*role buddy-system-lambda-execution-role, file system fs-\w+/)
    assert.equal((await fn('buddy-system')).Configuration?.Environment?.Variables?.JWT_KEY, key)
  })

  it('uploads changed code once to each function, and not again', async () => {
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
      ])
      assert.match(changed.output, /updated: function buddy-system \(code\), function buddy-system-db-seeder \(code\)/)
      before = moto.requests().length
      assert.equal((await deploy(moto.endpoint, 'rds', '--yes')).code, 0)
      assert.deepEqual(changes(moto.requests().slice(before)), [])
    } finally {
      writeFileSync(api, source)
    }
  })

  it('deploys the rds scenario: a private PostgreSQL instance, its password printed once', async () => {
    const { code, output } = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(code, 0, output)
    await assertCommon(['AWSLambdaBasicExecutionRole', 'AWSLambdaVPCAccessExecutionRole', 'AWSXRayDaemonWriteAccess'])
    const { DBInstances: [db] = [] } = await rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: 'buddy-system' }))
    assert.equal(db.Engine, 'postgres')
    assert.equal(db.DBInstanceClass, 'db.t4g.micro')
    assert.equal(db.AllocatedStorage, 20)
    assert.equal(db.MasterUsername, 'postgres')
    assert.equal(db.PubliclyAccessible, false)
    assert.deepEqual(db.VpcSecurityGroups?.map((g) => g.VpcSecurityGroupId), [(await securityGroup())[0].GroupId])
    assert.deepEqual(db.TagList, [{ Key: 'app', Value: 'buddy-system' }])
    let password = ''
    await assertFunctions((vars) => {
      assert.equal(vars.DB_LOCATION, 'rds')
      assert.equal(vars.PG_USERNAME, 'postgres')
      assert.equal(vars.PG_ENDPOINT, db.Endpoint?.Address)
      assert.equal(vars.PG_PORT, '5432')
      assert.equal(vars.PG_SSLMODE, 'verify-full')
      assert.equal(vars.NODE_EXTRA_CA_CERTS, '/var/runtime/ca-cert.pem')
      password = vars.PG_PASSWORD
    })
    assert.ok(password.length >= 20)
    assert.equal(output.split(password).length - 1, 1, 'the password is printed exactly once')
    assert.match(output, /password manager/)
    const again = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(again.code, 0, again.output)
    assert.ok(!again.output.includes(password), 'a rerun does not print the password')
    assert.equal((await fn('buddy-system')).Configuration?.Environment?.Variables?.PG_PASSWORD, password)
  })

  it('destroys everything a deploy made, and says so', async () => {
    for (const scenario of ['efs', 'rds']) {
      assert.equal((await deploy(moto.endpoint, scenario, '--yes')).code, 0)
      const refused = await deploy(moto.endpoint, 'destroy', scenario)
      assert.equal(refused.code, 1)
      assert.match(refused.output, /pass --yes to confirm/)
      assert.equal((await lambda.send(new ListFunctionsCommand({}))).Functions?.length, 2, 'nothing was deleted')

      const { code, output } = await deploy(moto.endpoint, 'destroy', scenario, '--yes')
      assert.equal(code, 0, output)
      assert.match(output, /removed: function buddy-system, function buddy-system-db-seeder, role buddy-system-lambda-execution-role/)
      assert.deepEqual((await lambda.send(new ListFunctionsCommand({}))).Functions, [])
      await assert.rejects(iam.send(new GetRoleCommand({ RoleName: 'buddy-system-lambda-execution-role' })), /NoSuchEntity|cannot be found/)
      assert.deepEqual(await securityGroup(), [])
      assert.deepEqual((await efs.send(new DescribeFileSystemsCommand({}))).FileSystems, [])
      assert.deepEqual((await rds.send(new DescribeDBInstancesCommand({}))).DBInstances, [])
      const twice = await deploy(moto.endpoint, 'destroy', scenario, '--yes')
      assert.equal(twice.code, 0, twice.output)
      assert.match(twice.output, /nothing to remove/)
    }
  })

  it('stops before creating anything without credentials, and says how to configure them', async () => {
    const child = run('deploy.ts', {
      ...aws(moto.endpoint),
      AWS_ACCESS_KEY_ID: undefined,
      AWS_SECRET_ACCESS_KEY: undefined,
      AWS_SHARED_CREDENTIALS_FILE: join(work, 'no-credentials'),
      AWS_CONFIG_FILE: join(work, 'no-config'),
    }, ['efs', '--yes'], work)
    assert.equal(await child.exited, 1)
    assert.match(child.output(), /credentials failed: .*No AWS credentials found: run `aws configure`/s)
    assert.deepEqual(changes(moto.requests()), [])
  })

  it('refuses to take over a resource of the same name that is not its own', async () => {
    await iam.send(new CreateRoleCommand({ RoleName: 'buddy-system-lambda-execution-role', AssumeRolePolicyDocument: '{}' }))
    const { code, output } = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(code, 1)
    assert.match(output, /role failed: role buddy-system-lambda-execution-role exists and is not ours \(it has no tag app=buddy-system\): pass another --name/)
    assert.doesNotMatch(output, /\n\s+at /, 'no stack trace')
  })

  it('finishes the job when run again after failing halfway', async () => {
    // Another app's function holds the seeder's name: the deploy fails after making the rest.
    const zip = zipSync({ 'x.mjs': Buffer.from('export const handler = async () => 1') })
    await iam.send(new CreateRoleCommand({ RoleName: 'other', AssumeRolePolicyDocument: '{}' }))
    await lambda.send(new CreateFunctionCommand({
      FunctionName: 'buddy-system-db-seeder', Runtime: 'nodejs24.x', Handler: 'x.handler',
      Role: 'arn:aws:iam::123456789012:role/other', Code: { ZipFile: zip },
    }))
    const failed = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(failed.code, 1)
    assert.match(failed.output, /functions failed: function buddy-system-db-seeder exists and is not ours/)
    assert.ok(await fn('buddy-system'), 'the api function was made before the failure')
    await lambda.send(new DeleteFunctionCommand({ FunctionName: 'buddy-system-db-seeder' }))

    const before = moto.requests().length
    const again = await deploy(moto.endpoint, 'efs', '--yes')
    assert.equal(again.code, 0, again.output)
    const made = changes(moto.requests().slice(before)).filter((op) => !op.endsWith('/configuration'))
    assert.deepEqual(made, [
      'POST /2015-03-31/functions',
      'POST /2021-10-31/functions/buddy-system/url',
      'POST /2015-03-31/functions/buddy-system/policy',
      'POST /2015-03-31/functions/buddy-system/policy',
    ])
    assert.equal(createdFunctions().at(-1).FunctionName, 'buddy-system-db-seeder')
  })

  it('says which flags to pass where the region has no default VPC', async () => {
    const { Vpcs = [] } = await ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: 'is-default', Values: ['true'] }] }))
    for (const vpc of Vpcs) {
      const { Subnets = [] } = await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpc.VpcId!] }] }))
      for (const subnet of Subnets) await ec2.send(new DeleteSubnetCommand({ SubnetId: subnet.SubnetId }))
      await ec2.send(new DeleteVpcCommand({ VpcId: vpc.VpcId }))
    }
    const { code, output } = await deploy(moto.endpoint, 'rds', '--yes')
    assert.equal(code, 1)
    assert.match(output, /network failed: this region has no default VPC: pass --subnets \(two or more, in different Availability Zones\)/)
    assert.deepEqual(changes(moto.requests()).filter((op) => !/^Delete(Subnet|Vpc)$/.test(op)), [])
  })

  it('prints the deploy as an AWS CLI script that bash accepts, calling no AWS API', async () => {
    for (const scenario of ['efs', 'rds']) {
      const child = run('deploy.ts', { ...aws(moto.endpoint), AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined }, [scenario, '--dry-run'], work)
      assert.equal(await child.exited, 0)
      const text = child.stdout()
      assert.ok(text.startsWith('#!/usr/bin/env bash\n'), text)
      writeFileSync(join(work, 'deploy.sh'), text)
      execFileSync('bash', ['-n', join(work, 'deploy.sh')])
      assert.match(text, /ROLE_ARN=\$\(aws iam create-role /)
      assert.match(text, /aws lambda create-function --function-name buddy-system --role "\$\{ROLE_ARN\}"/)
      assert.match(text, /--invoked-via-function-url/)
      assert.match(text, scenario === 'efs' ? /FS_ID=\$\(aws efs create-file-system --creation-token buddy-system --encrypted/ : /aws rds wait db-instance-available/)
    }
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
    const child = run('deploy.ts', {}, ['package'], work)
    assert.equal(await child.exited, 0, child.output())
    assert.match(child.output(), /package: build\.zip \d+\.\d KB/)
    const zip = readFileSync(join(work, 'build.zip'))
    assert.ok(zip.length < 300 * 1024, `build.zip is ${zip.length} bytes: the target is under 300 KB`)
    const files = unzipSync(zip)
    // zod's other locales (German, Spanish…) are left out of the bundle: they come with `import { z } from 'zod'`.
    const locales = /Zeichen|caracteres/.test(new TextDecoder().decode(files['api.mjs']))
    assert.ok(!locales, "api.mjs carries zod's locales: import zod/mini as a namespace, and only `en` from zod/locales")
    const names = Object.keys(files)
    assert.deepEqual(names.filter((f) => !/^chunk-\w+\.mjs$/.test(f)), ['api.mjs', 'fake_db.json', 'seed.mjs'])
    assert.deepEqual(names, [...names].sort(), 'entries in a fixed order')
    mkdirSync(join(dir, 'task'))
    for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, 'task', name), data)
  })

  const lambdaRun = (code: string, env: Record<string, string>) =>
    execFileSync(node24!, ['--input-type=module', '-e', code], {
      cwd: join(dir, 'task'),
      env: { PATH: process.env.PATH, AWS_LAMBDA_FUNCTION_NAME: 'buddy-system', DB_PATH: join(dir, 'lambda.db'), ...env },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    })

  it('answers GET /animals from api.handler, and seeds with seed.handler, on a fresh SQLite file', () => {
    const event = JSON.stringify({
      version: '2.0', rawPath: '/animals', rawQueryString: 'limit=2', headers: {},
      requestContext: { http: { method: 'GET', path: '/animals' }, stage: '$default' }, isBase64Encoded: false,
    })
    const code = `
      const api = await import('./api.mjs'), seed = await import('./seed.mjs')
      const list = async () => JSON.parse((await api.handler(${event})).body).meta
      console.log(JSON.stringify([await list(), await seed.handler(), await list()]))`
    const out = lambdaRun(code, { JWT_KEY: 'k'.repeat(64) }).trim().split('\n').at(-1)!
    const [before, seeded, after] = JSON.parse(out)
    assert.deepEqual(before, { count: 0, limit: 2, offset: 0 })
    assert.equal(seeded.statusCode, 200)
    assert.deepEqual(JSON.parse(seeded.body).added, { users: 8, animals: 16, fosters: 8, adoptions: 7 })
    assert.deepEqual(after, { count: 16, limit: 2, offset: 0 })
  })

  // Node modules that built-ins load only when one of their exports is read (http.WebSocket, fs.promises,
  // crypto.webcrypto, util.parseArgs), as an `import` of the built-in reads them all (api.ts).
  const LAZY = ['internal/deps/undici/undici', 'internal/fs/promises', 'internal/crypto/webcrypto', 'internal/util/parse_args/parse_args']
  const modulesAfter = (code: string, env: Record<string, string>): string[] => {
    const out = lambdaRun(`${code}\nconsole.log(JSON.stringify(process.moduleLoadList)); process.exit(0)`, env)
    return JSON.parse(out.trim().split('\n').at(-1)!)
  }
  const lazyLoaded = (modules: string[]) => LAZY.filter((name) => modules.includes(`NativeModule ${name}`))

  it("loads none of what Node's built-ins keep for later, nor node:crypto for a read: not on a cold start, not in the local server", () => {
    const event = JSON.stringify({
      version: '2.0', rawPath: '/animals/1', rawQueryString: '', headers: {},
      requestContext: { http: { method: 'GET', path: '/animals/1' }, stage: '$default' }, isBase64Encoded: false,
    })
    const env = { JWT_KEY: 'k'.repeat(64), DB_PATH: join(dir, 'lazy.db') }
    const answer = `const { handler } = await import('./api.mjs'), { statusCode } = await handler(${event})
      if (statusCode !== 404) throw new Error(\`GET /animals/1 on an empty file: \${statusCode}\`)`
    const coldStart = modulesAfter(answer, env)
    assert.deepEqual(lazyLoaded(coldStart), [])
    // node:crypto (50 modules) is for passwords, tokens and the local server's request IDs, not for a read.
    assert.ok(!coldStart.includes('NativeModule crypto'), 'a cold start for a read loaded node:crypto')
    // `node api.mjs`: serving on a free port once the import is done, after seeding the empty file.
    const server = modulesAfter(`process.argv[1] = process.cwd() + '/api.mjs'; await import(process.argv[1])`, { ...env, PORT: '0' })
    assert.ok(server.includes('NativeModule _http_server'), 'the server started')
    assert.deepEqual(lazyLoaded(server), [])
  })

  it('stops the cold start when JWT_KEY is missing on Lambda', () => {
    assert.throws(() => lambdaRun(`await import('./api.mjs')`, {}), /JWT_KEY is not set/)
  })
})
