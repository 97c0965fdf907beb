// `tsx deploy.ts ci github`: GitHub's OIDC provider, the deployer role and the workflow, against moto; then the
// proof that the role's policy is enough and no more: deploys run with the role's credentials, and each request they
// make is decided by the policy (iam.ts), as IAM would, where moto cannot judge it.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, beforeEach, describe, it } from 'node:test'
import {
  CreateOpenIDConnectProviderCommand,
  CreateRoleCommand,
  DeleteRoleCommand,
  GetOpenIDConnectProviderCommand,
  GetRoleCommand,
  GetRolePolicyCommand,
} from '@aws-sdk/client-iam'
import { DescribeSecurityGroupsCommand } from '@aws-sdk/client-ec2'
import { DescribeAccessPointsCommand, DescribeFileSystemsCommand } from '@aws-sdk/client-efs'
import { AssumeRoleWithWebIdentityCommand, STSClient } from '@aws-sdk/client-sts'
import { run, root } from './cli.ts'
import { allows, authorizationsOf, conditionHolds, type Authorization, type Policy } from './iam.ts'
import { changes, startMoto, startProxy } from './moto.ts'
import { awsClients, awsEnv, projectCopy, realSeederAnswers, seederAnswer } from './deploying.ts'

const moto = await startMoto()
if (typeof moto === 'string' && process.env.CI === 'true') throw new Error(`CI=true and moto cannot run: ${moto}`)
const work = projectCopy()
const ROLE = 'arn:aws:iam::123456789012:role/buddy-system-github-deployer'
const PROVIDER = 'arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com'
const BOUNDARY = 'arn:aws:iam::123456789012:policy/buddy-system-functions-boundary'
const WORKFLOW = join(work, '.github/workflows/deploy.yml')

describe('deploy from GitHub Actions', { skip: typeof moto === 'string' ? moto : false }, () => {
  if (typeof moto === 'string') return
  const { iam, ec2, efs } = awsClients(moto.endpoint)
  after(() => moto.stop())
  beforeEach(async () => {
    await moto.reset()
    rmSync(join(work, '.github'), { recursive: true, force: true })
  })
  const command = async (env: Record<string, string | undefined>, ...args: string[]) => {
    const child = run('deploy.ts', env, args, work)
    return { code: await child.exited, output: child.output() }
  }
  const ci = (...args: string[]) => command(awsEnv(moto.endpoint), 'ci', 'github', ...args)
  const trustOf = async () =>
    JSON.parse(
      decodeURIComponent(
        (await iam.send(new GetRoleCommand({ RoleName: 'buddy-system-github-deployer' }))).Role!
          .AssumeRolePolicyDocument!,
      ),
    )
  const policyOf = async (): Promise<Policy> =>
    JSON.parse(
      decodeURIComponent(
        (await iam.send(new GetRolePolicyCommand({ RoleName: 'buddy-system-github-deployer', PolicyName: 'deploy' })))
          .PolicyDocument!,
      ),
    )

  it('makes the provider, the deployer role and a valid workflow; a rerun changes nothing; a provider not ours is left alone', async () => {
    const made = await ci('acme/shelter', 'rds')
    assert.equal(made.code, 0, made.output)
    assert.match(
      made.output,
      /created: OIDC provider token\.actions\.githubusercontent\.com, policy buddy-system-functions-boundary, role buddy-system-github-deployer, role policy deploy/,
    )
    assert.match(made.output, /Commit \.github\/workflows\/deploy\.yml and push/)
    const provider = await iam.send(new GetOpenIDConnectProviderCommand({ OpenIDConnectProviderArn: PROVIDER }))
    assert.deepEqual(provider.ClientIDList, ['sts.amazonaws.com'])
    assert.deepEqual(provider.Tags, [{ Key: 'app', Value: 'buddy-system' }])
    assert.deepEqual((await trustOf()).Statement[0].Condition, {
      StringEquals: {
        'token.actions.githubusercontent.com:aud': 'sts.amazonaws.com',
        'token.actions.githubusercontent.com:sub': 'repo:acme/shelter:ref:refs/heads/main',
      },
    })
    const policy = await policyOf()
    assert.ok(
      policy.Statement.every((s) => [s.Action].flat().every((a) => a !== '*' && !a.endsWith(':*'))),
      'no * action',
    )

    // The workflow: valid for GitHub (a real validator of its schema), the tests first, the deploy only on main.
    const validator = join(root, 'node_modules/.bin/action-validator')
    execFileSync(validator, [WORKFLOW], { cwd: work })
    const text = readFileSync(WORKFLOW, 'utf8')
    for (const line of [
      /^on:\n {2}push:\n {2}pull_request:$/m,
      /^ {4}needs: test$/m,
      /^ {4}if: github\.event_name == 'push' && github\.ref == 'refs\/heads\/main'$/m,
      /^ {6}id-token: write$/m,
      /^ {10}node-version: 24$/m,
      new RegExp(`^ {10}role-to-assume: ${ROLE}$`, 'm'),
      /^ {10}aws-region: us-east-1$/m,
      /^ {6}- run: npx tsx deploy\.ts rds --yes --name buddy-system --region us-east-1$/m,
    ])
      assert.match(text, line)
    assert.equal(text.match(/id-token: write/g)?.length, 1, 'only the deploy job may ask for a token')
    writeFileSync(WORKFLOW, '# mine\n')
    const kept = await ci('acme/shelter', 'rds')
    assert.equal(kept.code, 1)
    assert.match(kept.output, /\.github\/workflows\/deploy\.yml is there already: pass --force to write it again/)
    assert.equal(readFileSync(WORKFLOW, 'utf8'), '# mine\n')

    const before = moto.requests().length
    const again = await ci('acme/shelter', 'rds', '--force')
    assert.equal(again.code, 0, again.output)
    assert.deepEqual(changes(moto.requests().slice(before)), [], 'nothing changed in AWS')
    assert.equal(readFileSync(WORKFLOW, 'utf8'), text)

    const branch = await ci('acme/shelter', 'rds', '--force', '--branch', 'release')
    assert.equal(branch.code, 0, branch.output)
    assert.match(branch.output, /updated: role buddy-system-github-deployer \(who may assume it\)/)
    assert.equal(
      (await trustOf()).Statement[0].Condition.StringEquals['token.actions.githubusercontent.com:sub'],
      'repo:acme/shelter:ref:refs/heads/release',
    )

    // An account's provider that another team made, for another audience: not changed, and said.
    await moto.reset()
    rmSync(join(work, '.github'), { recursive: true, force: true })
    await iam.send(
      new CreateOpenIDConnectProviderCommand({
        Url: 'https://token.actions.githubusercontent.com',
        ClientIDList: ['their-audience'],
        ThumbprintList: ['6938fd4d98bab03faadb97b34396831e3780aea1'],
      }),
    )
    const theirs = await ci('acme/shelter', 'rds')
    assert.equal(theirs.code, 1)
    assert.match(
      theirs.output,
      /the account's OIDC provider for token\.actions\.githubusercontent\.com is not ours, and does not take the audience sts\.amazonaws\.com/,
    )
    const left = await iam.send(new GetOpenIDConnectProviderCommand({ OpenIDConnectProviderArn: PROVIDER }))
    assert.deepEqual(left.ClientIDList, ['their-audience'])
    assert.equal(existsSync(WORKFLOW), false)
  })

  it('destroy removes the deployer of its scenario, and the provider where it made it and no other role trusts it', async () => {
    const gone = async (what: Promise<unknown>) => assert.rejects(what, /NoSuchEntity|not found|cannot be found/i)
    assert.equal((await ci('acme/shelter', 'efs')).code, 0)
    // destroy rds keeps the efs deployer.
    const other = await command(awsEnv(moto.endpoint), 'destroy', 'rds', '--yes')
    assert.equal(other.code, 0, other.output)
    assert.match(other.output, /role buddy-system-github-deployer deploys efs: it stays/)
    assert.match(
      other.output,
      /policy buddy-system-functions-boundary stays: role buddy-system-github-deployer deploys with it/,
    )
    await iam.send(new GetRoleCommand({ RoleName: 'buddy-system-github-deployer' }))

    // Another team's role trusts the provider: it stays.
    await iam.send(
      new CreateRoleCommand({
        RoleName: 'their-deployer',
        AssumeRolePolicyDocument: JSON.stringify({
          Version: '2012-10-17',
          Statement: [{ Effect: 'Allow', Principal: { Federated: PROVIDER }, Action: 'sts:AssumeRoleWithWebIdentity' }],
        }),
      }),
    )
    const kept = await command(awsEnv(moto.endpoint), 'destroy', 'efs', '--yes')
    assert.equal(kept.code, 0, kept.output)
    assert.match(kept.output, /OIDC provider token\.actions\.githubusercontent\.com stays: their-deployer trust it/)
    await gone(iam.send(new GetRoleCommand({ RoleName: 'buddy-system-github-deployer' })))
    await iam.send(new GetOpenIDConnectProviderCommand({ OpenIDConnectProviderArn: PROVIDER }))

    // Ours, and nobody else's: it goes with the deployer.
    await iam.send(new DeleteRoleCommand({ RoleName: 'their-deployer' }))
    assert.equal((await ci('acme/shelter', 'efs', '--force')).code, 0)
    const all = await command(awsEnv(moto.endpoint), 'destroy', 'efs', '--yes')
    assert.equal(all.code, 0, all.output)
    assert.match(
      all.output,
      /removed: .*role buddy-system-github-deployer, OIDC provider token\.actions\.githubusercontent\.com, policy buddy-system-functions-boundary/,
    )
    await gone(iam.send(new GetOpenIDConnectProviderCommand({ OpenIDConnectProviderArn: PROVIDER })))
  })

  it("lets only that repository's branch assume the role, with GitHub's token for AWS", async () => {
    assert.equal((await ci('acme/shelter', 'efs')).code, 0)
    const [statement] = (await trustOf()).Statement
    assert.equal(statement.Principal.Federated, PROVIDER)
    assert.equal(statement.Action, 'sts:AssumeRoleWithWebIdentity')
    // The claims of GitHub's tokens: https://docs.github.com/en/actions/reference/security/oidc#example-subject-claims
    const claims = (sub: string, aud = 'sts.amazonaws.com') => ({
      'token.actions.githubusercontent.com:sub': sub,
      'token.actions.githubusercontent.com:aud': aud,
    })
    assert.ok(conditionHolds(statement.Condition, claims('repo:acme/shelter:ref:refs/heads/main')))
    for (const [who, context] of Object.entries({
      'another repository': claims('repo:acme/other:ref:refs/heads/main'),
      'a fork': claims('repo:stranger/shelter:ref:refs/heads/main'),
      'another branch': claims('repo:acme/shelter:ref:refs/heads/feature'),
      'a pull request': claims('repo:acme/shelter:pull_request'),
      'an environment': claims('repo:acme/shelter:environment:production'),
      'a tag': claims('repo:acme/shelter:ref:refs/tags/v1'),
      'another audience': claims('repo:acme/shelter:ref:refs/heads/main', 'https://github.com/acme'),
    }))
      assert.equal(conditionHolds(statement.Condition, context), false, who)
  })

  for (const scenario of ['rds', 'efs'] as const) {
    it(`deploys ${scenario} as the deployer: every request its policy allows, and nothing of another deployment`, async () => {
      assert.equal((await ci('acme/shelter', scenario)).code, 0)
      const sts = new STSClient({
        endpoint: moto.endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
      })
      // What configure-aws-credentials does with the job's token (moto takes any token).
      const { Credentials: c } = await sts.send(
        new AssumeRoleWithWebIdentityCommand({
          RoleArn: ROLE,
          RoleSessionName: 'github-actions',
          WebIdentityToken: 'token',
        }),
      )
      const proxy = await startProxy(moto.endpoint, { record: true })
      const asDeployer = {
        ...awsEnv(proxy.endpoint),
        AWS_ACCESS_KEY_ID: c!.AccessKeyId,
        AWS_SECRET_ACCESS_KEY: c!.SecretAccessKey,
        AWS_SESSION_TOKEN: c!.SessionToken,
        GITHUB_ACTIONS: 'true',
      }
      const deploy = async (...args: string[]) => {
        const result = await command(asDeployer, ...args)
        assert.equal(result.code, 0, `${args.join(' ')}:\n${result.output}`)
      }
      try {
        await moto.answerInvocations([seederAnswer(), seederAnswer('loaded before'), seederAnswer('loaded before')])
        await deploy(scenario, '--yes', '--alerts', 'ops@example.org')
        await deploy(scenario, '--yes')
        const api = join(work, 'api.ts')
        const source = readFileSync(api, 'utf8')
        writeFileSync(api, source.replace("'hello to nobody'", "'hello to the deployer'"))
        try {
          await deploy(scenario, '--yes')
        } finally {
          writeFileSync(api, source)
        }
        await moto.answerInvocations([
          { statusCode: 200, headers: {}, body: '{"greeting":"hello to the deployer"}' },
          ...(await realSeederAnswers([{}, { staff: {} }])).slice(1),
        ])
        await deploy('status', scenario)
        await deploy('logs', scenario)
        await deploy('rollback', scenario)
      } finally {
        await proxy.close()
      }

      const policy = await policyOf()
      const where = {
        partition: 'aws',
        region: 'us-east-1',
        account: '123456789012',
        async tagsOf(id: string) {
          const list = id.startsWith('sg-')
            ? (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [id] }))).SecurityGroups?.[0]?.Tags
            : id.startsWith('fsap-')
              ? (await efs.send(new DescribeAccessPointsCommand({ AccessPointId: id }))).AccessPoints?.[0]?.Tags
              : (await efs.send(new DescribeFileSystemsCommand({ FileSystemId: id }))).FileSystems?.[0]?.Tags
          return Object.fromEntries((list ?? []).map((t) => [t.Key!, t.Value!]))
        },
        async boundaryOf(role: string) {
          return (await iam.send(new GetRoleCommand({ RoleName: role }))).Role?.PermissionsBoundary
            ?.PermissionsBoundaryArn
        },
        async fileSystemOf(accessPointArn: string) {
          const { AccessPoints = [] } = await efs.send(new DescribeAccessPointsCommand({}))
          return AccessPoints.find((p) => p.AccessPointArn === accessPointArn)!.FileSystemId!
        },
      }
      const mine = proxy.seen.filter((r) => r.credential === c!.AccessKeyId)
      assert.equal(proxy.seen.length, mine.length, 'every request signed with the deployer credentials')
      const asked: Authorization[] = []
      for (const r of mine) asked.push(...(await authorizationsOf(r, where)))
      const refused = asked
        .filter((a) => !allows(policy, a))
        .map((a) => `${a.from}: ${a.action} on ${a.resources.join(', ')}`)
      assert.deepEqual([...new Set(refused)], [], 'each request the deploy made is allowed')
      assert.ok(asked.length > 100, `${asked.length} authorizations`)

      // And nothing beyond this deployment.
      const arn = (s: string) => s.replace('{a}', '123456789012')
      const beyond: Authorization[] = [
        { action: 'lambda:UpdateFunctionCode', resources: [arn('arn:aws:lambda:us-east-1:{a}:function:someone-else')] },
        { action: 'lambda:InvokeFunction', resources: [arn('arn:aws:lambda:us-east-1:{a}:function:buddy-system-x')] },
        { action: 'iam:PutRolePolicy', resources: [arn('arn:aws:iam::{a}:role/admin')] },
        { action: 'iam:PutRolePolicy', resources: [ROLE] },
        {
          action: 'iam:AttachRolePolicy',
          resources: [arn('arn:aws:iam::{a}:role/buddy-system-lambda-execution-role')],
          context: { 'iam:PolicyARN': 'arn:aws:iam::aws:policy/AdministratorAccess' },
        },
        {
          action: 'iam:PassRole',
          resources: [arn('arn:aws:iam::{a}:role/buddy-system-lambda-execution-role')],
          context: { 'iam:PassedToService': 'ec2.amazonaws.com' },
        },
        {
          action: 'iam:PassRole',
          resources: [arn('arn:aws:iam::{a}:role/admin')],
          context: { 'iam:PassedToService': 'lambda.amazonaws.com' },
        },
        {
          action: 'logs:FilterLogEvents',
          resources: [arn('arn:aws:logs:us-east-1:{a}:log-group:/aws/lambda/someone-else')],
        },
        {
          action: 'ec2:AuthorizeSecurityGroupIngress',
          resources: [arn('arn:aws:ec2:us-east-1:{a}:security-group/sg-theirs')],
          context: { 'aws:ResourceTag/app': 'their-app' },
        },
        { action: 'rds:ModifyDBInstance', resources: [arn('arn:aws:rds:us-east-1:{a}:db:their-db')] },
        { action: 'rds:DeleteDBInstance', resources: [arn('arn:aws:rds:us-east-1:{a}:db:buddy-system')] },
        {
          action: 'elasticfilesystem:DeleteFileSystem',
          resources: [arn('arn:aws:elasticfilesystem:us-east-1:{a}:file-system/fs-1')],
          context: { 'aws:ResourceTag/app': 'buddy-system' },
        },
        {
          action: 'elasticfilesystem:CreateMountTarget',
          resources: [arn('arn:aws:elasticfilesystem:us-east-1:{a}:file-system/fs-2')],
          context: { 'aws:ResourceTag/app': 'their-app' },
        },
        { action: 'lambda:UpdateFunctionCode', resources: [arn('arn:aws:lambda:eu-west-1:{a}:function:buddy-system')] },
        // The functions' role, without its boundary, or with another; the boundary itself.
        { action: 'iam:CreateRole', resources: [arn('arn:aws:iam::{a}:role/buddy-system-lambda-execution-role')] },
        { action: 'iam:PutRolePolicy', resources: [arn('arn:aws:iam::{a}:role/buddy-system-lambda-execution-role')] },
        {
          action: 'iam:PutRolePermissionsBoundary',
          resources: [arn('arn:aws:iam::{a}:role/buddy-system-lambda-execution-role')],
          context: { 'iam:PermissionsBoundary': arn('arn:aws:iam::{a}:policy/wide-open') },
        },
        {
          action: 'iam:DeleteRolePermissionsBoundary',
          resources: [arn('arn:aws:iam::{a}:role/buddy-system-lambda-execution-role')],
          context: { 'iam:PermissionsBoundary': BOUNDARY },
        },
        { action: 'iam:CreatePolicyVersion', resources: [BOUNDARY] },
        // Alerts: this deployment's topic and alarms only.
        { action: 'sns:Subscribe', resources: [arn('arn:aws:sns:us-east-1:{a}:their-alerts')] },
        { action: 'sns:DeleteTopic', resources: [arn('arn:aws:sns:us-east-1:{a}:their-alerts')] },
        { action: 'cloudwatch:DeleteAlarms', resources: [arn('arn:aws:cloudwatch:us-east-1:{a}:alarm:their-alarm')] },
        {
          action: 'logs:PutMetricFilter',
          resources: [arn('arn:aws:logs:us-east-1:{a}:log-group:/aws/lambda/someone-else')],
        },
        { action: 'iam:DeletePolicy', resources: [BOUNDARY] },
      ]
      for (const request of beyond)
        assert.equal(allows(policy, request), false, `${request.action} on ${request.resources}`)
    })
  }
})
