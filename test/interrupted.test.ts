// deploy.ts killed anywhere, finished by a rerun: for each write call of a fresh deploy, a proxy in front of
// moto lets AWS (moto) apply it, then kills the deploy before it sees the answer; the same command, run again,
// must end in exactly what an uninterrupted deploy makes, nothing twice. And throttling, retried.
import assert from 'node:assert/strict'
import { after, beforeEach, describe, it } from 'node:test'
import { DescribeSecurityGroupsCommand } from '@aws-sdk/client-ec2'
import { DescribeLogGroupsCommand } from '@aws-sdk/client-cloudwatch-logs'
import {
  DescribeAccessPointsCommand,
  DescribeFileSystemsCommand,
  DescribeMountTargetsCommand,
} from '@aws-sdk/client-efs'
import {
  GetRolePolicyCommand,
  ListAttachedRolePoliciesCommand,
  ListRolePoliciesCommand,
  ListRolesCommand,
} from '@aws-sdk/client-iam'
import {
  GetFunctionCommand,
  GetFunctionConcurrencyCommand,
  GetFunctionUrlConfigCommand,
  GetPolicyCommand,
  ListAliasesCommand,
  ListFunctionsCommand,
  ListVersionsByFunctionCommand,
} from '@aws-sdk/client-lambda'
import { DescribeDBInstancesCommand, DescribeDBSubnetGroupsCommand } from '@aws-sdk/client-rds'
import { run } from './cli.ts'
import { awsClients, awsEnv, lambdaError, projectCopy, seederAnswer } from './deploying.ts'
import { NeedsMaster } from '../seed.ts'
import { operationOf, startMoto, startProxy } from './moto.ts'

const moto = await startMoto()
if (typeof moto === 'string' && process.env.CI === 'true')
  throw new Error(`CI=true and the deploy tests cannot run: ${moto}`)
const work = projectCopy()

async function deploy(endpoint: string, ...args: string[]) {
  return deployWith({}, endpoint, ...args)
}

async function deployWith(env: Record<string, string>, endpoint: string, ...args: string[]) {
  const child = run('deploy.ts', { ...awsEnv(endpoint), ...env }, args, work)
  const code = await child.exited
  return { code, output: child.output() }
}

describe('deploy.ts interrupted or throttled', { skip: typeof moto === 'string' ? moto : false }, () => {
  if (typeof moto === 'string') return
  const { lambda, iam, efs, ec2, rds, logs } = awsClients(moto.endpoint)
  after(() => moto.stop())
  beforeEach(async () => {
    await moto.reset()
    // The seeder's answers: the first run, and a rerun (a kill may have come before or after the first).
    await moto.answerInvocations([seederAnswer(), seederAnswer('loaded before')])
  })

  /** Everything of ours in moto, with AWS's random ids left out and the links between the parts kept. */
  async function snapshot() {
    const secrets = new Map<string, string>()
    const secret = (value: string) =>
      secrets.get(value) ?? (secrets.set(value, `secret ${secrets.size + 1}`), `secret ${secrets.size}`)
    const { SecurityGroups: groups = [] } = await ec2.send(new DescribeSecurityGroupsCommand({}))
    const ours = groups.filter((g) => g.GroupName !== 'default')
    const fileSystems = (await efs.send(new DescribeFileSystemsCommand({}))).FileSystems ?? []
    const accessPoints = (await efs.send(new DescribeAccessPointsCommand({}))).AccessPoints ?? []
    const roles = (await iam.send(new ListRolesCommand({}))).Roles?.filter((r) => !r.Path?.startsWith('/aws-')) ?? []
    const functions = (await lambda.send(new ListFunctionsCommand({}))).Functions ?? []
    const described = []
    for (const name of functions.map((f) => f.FunctionName!).sort()) described.push(await describeFunction(name)) // in order: secrets get their labels in it
    return {
      roles: await Promise.all(
        roles.map(async (r) => ({
          name: r.RoleName,
          trust: JSON.parse(decodeURIComponent(r.AssumeRolePolicyDocument!)),
          policies: (
            await iam.send(new ListAttachedRolePoliciesCommand({ RoleName: r.RoleName }))
          ).AttachedPolicies?.map((p) => p.PolicyName).sort(),
          inline: await Promise.all(
            ((await iam.send(new ListRolePoliciesCommand({ RoleName: r.RoleName }))).PolicyNames ?? []).map(
              async (name) => {
                const { PolicyDocument } = await iam.send(
                  new GetRolePolicyCommand({ RoleName: r.RoleName, PolicyName: name }),
                )
                return [
                  name,
                  decodeURIComponent(PolicyDocument!)
                    .replace(/dbuser:[\w-]+\//, 'dbuser:<the instance>/')
                    .replace(/file-system\/fs-\w+/, 'file-system/<the file system>')
                    .replace(/access-point\/fsap-\w+/, 'access-point/<the access point>'),
                ]
              },
            ),
          ),
        })),
      ),
      securityGroups: ours.map((g) => ({
        name: g.GroupName,
        tags: g.Tags,
        inbound: g.IpPermissions?.map((p) => [
          p.IpProtocol,
          p.FromPort,
          p.ToPort,
          p.UserIdGroupPairs?.map((u) => (u.GroupId === g.GroupId ? 'itself' : u.GroupId)),
        ]).sort(),
      })),
      fileSystems: await Promise.all(
        fileSystems.map(async (f) => ({
          token: f.CreationToken,
          encrypted: f.Encrypted,
          tags: f.Tags,
          mountTargets: (
            (await efs.send(new DescribeMountTargetsCommand({ FileSystemId: f.FileSystemId }))).MountTargets ?? []
          )
            .map((t) => t.AvailabilityZoneName)
            .sort(),
        })),
      ),
      accessPoints: accessPoints.map((p) => ({
        fileSystem: fileSystems.findIndex((f) => f.FileSystemId === p.FileSystemId),
        user: p.PosixUser,
        root: p.RootDirectory,
        tags: p.Tags,
      })),
      dbSubnetGroups: ((await rds.send(new DescribeDBSubnetGroupsCommand({}))).DBSubnetGroups ?? []).map((g) => [
        g.DBSubnetGroupName,
        g.Subnets?.length,
      ]),
      dbInstances: ((await rds.send(new DescribeDBInstancesCommand({}))).DBInstances ?? []).map((d) => ({
        id: d.DBInstanceIdentifier,
        class: d.DBInstanceClass,
        engine: d.Engine,
        storage: d.AllocatedStorage,
        user: d.MasterUsername,
        public: d.PubliclyAccessible,
        encrypted: d.StorageEncrypted,
        tags: d.TagList,
        iam: d.IAMDatabaseAuthenticationEnabled,
        groups: d.VpcSecurityGroups?.map((g) => ours.findIndex((o) => o.GroupId === g.VpcSecurityGroupId)),
      })),
      logGroups: ((await logs.send(new DescribeLogGroupsCommand({}))).logGroups ?? []).map((g) => [
        g.logGroupName,
        g.retentionInDays,
      ]),
      functions: described,
    }

    async function describeFunction(name: string) {
      const { Configuration: c, Tags } = await lambda.send(new GetFunctionCommand({ FunctionName: name }))
      const env = Object.entries(c?.Environment?.Variables ?? {})
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => [k, /PASSWORD|KEY/.test(k) ? secret(v) : v])
      const versions = (await lambda.send(new ListVersionsByFunctionCommand({ FunctionName: name }))).Versions ?? []
      const url = await lambda
        .send(new GetFunctionUrlConfigCommand({ FunctionName: name, Qualifier: 'live' }))
        .catch(() => undefined)
      const policy = await lambda
        .send(new GetPolicyCommand({ FunctionName: name, Qualifier: 'live' }))
        .catch(() => undefined)
      return {
        name,
        tags: Tags,
        runtime: c?.Runtime,
        handler: c?.Handler,
        memory: c?.MemorySize,
        timeout: c?.Timeout,
        role: c?.Role,
        architectures: c?.Architectures,
        env,
        subnets: c?.VpcConfig?.SubnetIds?.length,
        groups: c?.VpcConfig?.SecurityGroupIds?.map((id) => ours.findIndex((o) => o.GroupId === id)),
        concurrency: (await lambda.send(new GetFunctionConcurrencyCommand({ FunctionName: name })))
          .ReservedConcurrentExecutions,
        versions: versions.map((v) => [v.Version, v.Description]),
        aliases: (await lambda.send(new ListAliasesCommand({ FunctionName: name }))).Aliases?.map((a) => [
          a.Name,
          a.FunctionVersion,
        ]),
        url: url?.AuthType,
        permissions:
          policy &&
          JSON.parse(policy.Policy!)
            .Statement.map((s: { Sid: string }) => s.Sid)
            .sort(),
      }
    }
  }

  const seederRuns = () =>
    moto
      .requests()
      .map(operationOf)
      .filter((op) => op === 'POST /2015-03-31/functions/buddy-system-db-seeder/invocations').length

  for (const scenario of ['efs', 'rds']) {
    it(
      `finishes a ${scenario} deploy killed after any one of its writes, with nothing made twice`,
      { timeout: 1_800_000 },
      async () => {
        // The uninterrupted deploy: what to compare with, and its writes, in order.
        const proxy = await startProxy(moto.endpoint)
        const whole = await deploy(proxy.endpoint, scenario, '--yes')
        await proxy.close()
        assert.equal(whole.code, 0, whole.output)
        const expected = await snapshot()
        const writes = [...proxy.writes]
        assert.ok(writes.length >= 15, writes.join('\n'))
        // rds: between CreateDBInstance and the seeder's first invocation (which makes the API role with the master
        // password), a rerun finds an instance whose API role cannot log in: the seeder answers 401, as it would on RDS.
        const created = writes.indexOf('CreateDBInstance') + 1
        const seeded = writes.indexOf('POST /2015-03-31/functions/buddy-system-db-seeder/invocations') + 1
        const needsMaster = lambdaError(new NeedsMaster('password authentication failed for user "buddy_api"'))

        for (let k = 1; k <= writes.length; k++) {
          await moto.reset()
          const roleMissing = scenario === 'rds' && k >= created && k < seeded
          await moto.answerInvocations(
            roleMissing ? [needsMaster, seederAnswer()] : [seederAnswer(), seederAnswer('loaded before')],
          )
          let child: ReturnType<typeof run> | undefined
          const cutting = await startProxy(moto.endpoint, {
            afterWrite: (n) => n === k && (child!.killGroup('SIGKILL'), true),
          })
          child = run('deploy.ts', awsEnv(cutting.endpoint), [scenario, '--yes'], work, true)
          const code = await child.exited
          await cutting.close()
          const what = `killed after write ${k} of ${writes.length} (${writes[k - 1]})`
          assert.equal(code, null, `${what}: the deploy ended by itself:\n${child.output()}`)
          assert.deepEqual(cutting.writes, writes.slice(0, k), `${what}: the same writes as the uninterrupted deploy`)

          const before = seederRuns()
          const rerun = await deploy(moto.endpoint, scenario, '--yes')
          assert.equal(rerun.code, 0, `${what}, then run again:\n${rerun.output}`)
          assert.deepEqual(await snapshot(), expected, what)
          assert.equal(
            seederRuns() - before,
            roleMissing ? 2 : 1,
            `${what}: the rerun runs the seeder${roleMissing ? ', and again with the master password' : ''}`,
          )
          if (scenario === 'rds' && k < seeded) {
            assert.match(
              rerun.output,
              /The master password of the database, shown this once/,
              `${what}: the API role needs it, and nobody has it`,
            )
            if (roleMissing) assert.match(rerun.output, /nobody holds the master password .*\n.*resetting it/)
          }
        }
        console.log(
          `${scenario}: killed after each of its ${writes.length} writes (${writes.join(', ')}); each rerun made the same deployment`,
        )
      },
    )
  }

  it('retries a throttled call, and says so from its second refusal on', async () => {
    const refusals: Record<string, number> = { GetFunction: 3, GetRole: 2 } // Lambda's 429 JSON; IAM's query-API XML
    const proxy = await startProxy(moto.endpoint, {
      throttle: (operation) => {
        const call =
          operation.startsWith('GET /2015-03-31/functions/') && !operation.includes('/versions')
            ? 'GetFunction'
            : operation
        return (refusals[call] ?? 0) > 0 && refusals[call]-- > 0
      },
    })
    const { code, output } = await deploy(proxy.endpoint, 'efs', '--yes')
    await proxy.close()
    assert.equal(code, 0, output)
    assert.deepEqual(
      proxy.throttled.map((op) => op.replace(/^GET .*/, 'GetFunction')),
      ['GetFunction', 'GetFunction', 'GetFunction', 'GetRole', 'GetRole'],
    )
    assert.deepEqual(output.match(/AWS is throttling .*/g), [
      'AWS is throttling GetFunction (Rate exceeded): 2 of 8 attempts refused, retrying after a longer wait',
      'AWS is throttling GetFunction (Rate exceeded): 3 of 8 attempts refused, retrying after a longer wait',
      'AWS is throttling GetRole (Rate exceeded): 2 of 8 attempts refused, retrying after a longer wait',
    ])
  })

  it('stops, saying what to do, when AWS throttles a call through every attempt', async () => {
    const proxy = await startProxy(moto.endpoint, { throttle: (operation) => operation === 'CreateRole' })
    const { code, output } = await deployWith({ AWS_MAX_ATTEMPTS: '3' }, proxy.endpoint, 'rds', '--yes')
    await proxy.close()
    assert.equal(code, 1, output)
    assert.deepEqual(proxy.throttled, ['CreateRole', 'CreateRole', 'CreateRole'])
    assert.match(output, /AWS is throttling CreateRole \(Rate exceeded\): 2 of 3 attempts refused/)
    assert.match(
      output,
      /✘ role failed: CreateRole: Throttling: Rate exceeded\nAWS throttled this call 3 times in a row: .* run the same command again/,
    )
    assert.doesNotMatch(output, /quota/i)
  })
})
