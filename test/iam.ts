// What IAM would decide, for the deploy tests: moto's own enforcement evaluates every action against Resource "*",
// names some by their signing name, and knows neither the permissions AWS checks implicitly (iam:PassRole on
// CreateFunction) nor most conditions. So each request the proxy saw is mapped here to the IAM actions, resource ARNs
// and condition keys the Service Authorization Reference gives for it, and a policy document is evaluated against them.
// https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html
import type { Seen } from './moto.ts'

export interface Statement {
  Sid?: string
  Effect: 'Allow' | 'Deny'
  Action: string | string[]
  Resource: string | string[]
  Condition?: Record<string, Record<string, string | string[]>>
}
export interface Policy {
  Statement: Statement[]
}

/** One authorization IAM makes: an action, on resources, with the request's condition keys. */
export interface Authorization {
  action: string
  resources: string[]
  context?: Record<string, string | undefined>
  /** The request it comes from, for messages. */
  from?: string
}

const list = (v: string | string[]) => (Array.isArray(v) ? v : [v])
/** IAM's wildcards: * any run of characters, ? one. */
const glob = (pattern: string, value: string, caseless = false) =>
  new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    caseless ? 'i' : '',
  ).test(value)

export function conditionHolds(condition: Statement['Condition'], context: Authorization['context'] = {}): boolean {
  for (const [operator, keys] of Object.entries(condition ?? {})) {
    for (const [key, wanted] of Object.entries(keys)) {
      const value = context[key]
      if (value === undefined) return false // a key the request does not have: the condition fails
      const match =
        operator === 'StringEquals' || operator === 'ArnEquals'
          ? (w: string) => w === value
          : operator === 'StringLike' || operator === 'ArnLike'
            ? (w: string) => glob(w, value)
            : undefined
      if (!match) throw new Error(`the evaluator does not know the operator ${operator}`)
      if (!list(wanted).some(match)) return false
    }
  }
  return true
}

/** Whether the policy allows it: every resource by an Allow statement whose action, resource and conditions match,
 * and none by a Deny. */
export function allows(policy: Policy, request: Authorization): boolean {
  const matches = (s: Statement, resource: string) =>
    list(s.Action).some((a) => glob(a, request.action, true)) &&
    list(s.Resource).some((r) => glob(r, resource)) &&
    conditionHolds(s.Condition, request.context)
  return request.resources.every(
    (resource) =>
      policy.Statement.some((s) => s.Effect === 'Allow' && matches(s, resource)) &&
      !policy.Statement.some((s) => s.Effect === 'Deny' && matches(s, resource)),
  )
}

export interface Where {
  partition: string
  region: string
  account: string
  /** The tags of a resource by its id (a security group, a file system), for aws:ResourceTag. */
  tagsOf(id: string): Promise<Record<string, string>>
  /** The permissions boundary a role has (its ARN). */
  boundaryOf(role: string): Promise<string | undefined>
  /** The file system of an access point, by the access point's ARN. */
  fileSystemOf(accessPointArn: string): Promise<string>
}

/** The authorizations a request needs: its own action, and those AWS checks on the caller's behalf. */
export async function authorizationsOf(r: Seen, where: Where): Promise<Authorization[]> {
  const { partition: p, region, account } = where
  const arn = (service: string, resource: string, at = region) => `arn:${p}:${service}:${at}:${account}:${resource}`
  const from = r.target ?? (new URLSearchParams(r.body).get('Action') || `${r.method} ${r.path}`)
  const out: Authorization[] = []
  const add = (action: string, resources: string[], context?: Authorization['context']) =>
    out.push({ action, resources, context, from })
  const resourceTag = async (id: string) => ({ 'aws:ResourceTag/app': (await where.tagsOf(id)).app })

  // Query APIs (EC2, IAM, RDS, STS): the Action parameter.
  const query = new URLSearchParams(r.body)
  const action = query.get('Action')
  if (action && r.method === 'POST' && !r.target) {
    // Each query API has its own Version.
    const versions: Record<string, string> = {
      '2016-11-15': 'ec2',
      '2010-05-08': 'iam',
      '2014-10-31': 'rds',
      '2011-06-15': 'sts',
      '2010-03-31': 'sns',
    }
    const service = versions[query.get('Version') ?? '']
    if (!service) throw new Error(`no service for ${action}, Version ${query.get('Version')}`)
    const tags = () => {
      const found: Record<string, string> = {}
      for (const [k, v] of query) {
        const m = /^(?:TagSpecification\.1\.Tag|Tags\.member|Tags\.Tag)\.(\d+)\.Key$/.exec(k)
        if (m) found[v] = query.get(k.replace(/Key$/, 'Value')) ?? ''
      }
      return found
    }
    if (service === 'sts') return [] // GetCallerIdentity needs no permission
    if (service === 'sns') {
      // A subscription's ARN is its topic's and an id: the topic is the resource.
      const subscription = query.get('SubscriptionArn')?.split(':').slice(0, -1).join(':')
      const topic =
        query.get('TopicArn') ?? query.get('ResourceArn') ?? subscription ?? arn('sns', query.get('Name') ?? '*')
      add(`sns:${action}`, [topic])
      if (action === 'CreateTopic' && Object.keys(tags()).length) add('sns:TagResource', [topic])
      return out
    }
    if (service === 'ec2') {
      if (action.startsWith('Describe')) add(`ec2:${action}`, ['*'])
      else if (action === 'CreateSecurityGroup') {
        const requestTag = { 'aws:RequestTag/app': tags().app }
        add(
          'ec2:CreateSecurityGroup',
          [arn('ec2', `vpc/${query.get('VpcId')}`), arn('ec2', 'security-group/*')],
          requestTag,
        )
        if (Object.keys(tags()).length)
          add('ec2:CreateTags', [arn('ec2', 'security-group/*')], { 'ec2:CreateAction': 'CreateSecurityGroup' })
      } else if (action === 'AuthorizeSecurityGroupIngress') {
        const group = query.get('GroupId')!
        add(`ec2:${action}`, [arn('ec2', `security-group/${group}`)], await resourceTag(group))
      } else add(`ec2:${action}`, [arn('ec2', `security-group/${query.get('ResourceId.1')}`)])
    } else if (service === 'iam') {
      const role = query.get('RoleName')
      const policy = query.get('PolicyArn') ?? undefined
      const resource = role
        ? arn('iam', `role/${role}`, '')
        : (policy ?? (action === 'CreatePolicy' ? arn('iam', `policy/${query.get('PolicyName')}`, '') : '*'))
      const context: Record<string, string | undefined> = {}
      if (action === 'AttachRolePolicy') context['iam:PolicyARN'] = policy
      // The boundary a role gets (CreateRole, PutRolePermissionsBoundary), or has (a change of its policies).
      if (action === 'CreateRole' || action === 'PutRolePermissionsBoundary')
        context['iam:PermissionsBoundary'] = query.get('PermissionsBoundary') ?? undefined
      else if (role && /^(Put|Delete|Attach|Detach)Role/.test(action))
        context['iam:PermissionsBoundary'] = await where.boundaryOf(role)
      add(`iam:${action}`, [resource], context)
      if (action === 'CreateRole' && Object.keys(tags()).length) add('iam:TagRole', [resource])
    } else {
      const id = query.get('DBInstanceIdentifier')
      const group = query.get('DBSubnetGroupName')
      const resources = [
        ...(id ? [arn('rds', `db:${id}`)] : []),
        ...(group ? [arn('rds', `subgrp:${group}`)] : []),
        // The option and parameter groups it takes: the engine's defaults.
        ...(action === 'CreateDBInstance'
          ? [arn('rds', 'og:default:postgres-16'), arn('rds', 'pg:default.postgres16')]
          : []),
      ]
      add(`rds:${action}`, resources.length ? resources : ['*'])
      if (/^Create/.test(action) && Object.keys(tags()).length) add('rds:AddTagsToResource', resources.slice(0, 1))
    }
    return out
  }

  // CloudWatch Logs (JSON, X-Amz-Target).
  if (r.target?.startsWith('Logs_')) {
    const op = r.target.split('.').at(-1)!
    const body = JSON.parse(r.body || '{}')
    const group = body.logGroupName ?? body.logGroupIdentifier
    add(`logs:${op}`, op === 'DescribeLogGroups' ? ['*'] : [arn('logs', `log-group:${group}`)])
    if (op === 'CreateLogGroup' && body.tags) add('logs:TagResource', [arn('logs', `log-group:${group}`)])
    return out
  }

  // CloudWatch (JSON, X-Amz-Target): metrics take no resource; DescribeAlarms is a read of every alarm.
  if (r.target?.startsWith('GraniteServiceVersion20100801.')) {
    const op = r.target.split('.').at(-1)!
    const body = JSON.parse(r.body || '{}')
    if (op === 'GetMetricData' || op === 'DescribeAlarms') add(`cloudwatch:${op}`, ['*'])
    else {
      const alarms: string[] = body.AlarmNames ?? [body.AlarmName]
      add(
        `cloudwatch:${op}`,
        alarms.map((a) => arn('cloudwatch', `alarm:${a}`)),
      )
      if (op === 'PutMetricAlarm' && body.Tags?.length)
        add('cloudwatch:TagResource', [arn('cloudwatch', `alarm:${body.AlarmName}`)])
    }
    return out
  }

  // Lambda (REST).
  const lambda = /^\/(\d{4}-\d\d-\d\d)\/functions(?:\/([^/]+))?(?:\/(.+))?$/.exec(r.path)
  if (lambda) {
    const [, , named, part = ''] = lambda
    const body = r.body && r.body.startsWith('{') ? JSON.parse(r.body) : {}
    const fn = decodeURIComponent(named ?? body.FunctionName)
    const qualifier = r.query.get('Qualifier')
    const functionArn = arn('lambda', `function:${fn}${qualifier ? `:${qualifier}` : ''}`)
    const op = lambdaOperation(r.method, part, r.path.slice(1, 11), named === undefined)
    add(`lambda:${op}`, [part.startsWith('aliases/') ? `${functionArn}:${part.split('/')[1]}` : functionArn])
    if (op === 'CreateFunction' || op === 'UpdateFunctionConfiguration') {
      // What Lambda checks with the caller's permissions: passing the role, the VPC's resources, the mount targets.
      if (body.Role) add('iam:PassRole', [body.Role], { 'iam:PassedToService': 'lambda.amazonaws.com' })
      if (body.Tags) add('lambda:TagResource', [functionArn])
      if (body.VpcConfig?.SubnetIds?.length)
        for (const a of ['DescribeSecurityGroups', 'DescribeSubnets', 'DescribeVpcs']) add(`ec2:${a}`, ['*'])
      for (const { Arn } of body.FileSystemConfigs ?? []) {
        const fs = await where.fileSystemOf(Arn)
        add(
          'elasticfilesystem:DescribeMountTargets',
          [arn('elasticfilesystem', `file-system/${fs}`)],
          await resourceTag(fs),
        )
      }
    }
    return out
  }
  const tagging = /^\/2017-03-31\/tags\/(.+)$/.exec(r.path)
  if (tagging) return [{ action: 'lambda:TagResource', resources: [decodeURIComponent(tagging[1])], from }]

  // EFS (REST).
  const efs = /^\/2015-02-01\/(file-systems|mount-targets|access-points)(?:\/([^/]+))?(\/backup-policy)?$/.exec(r.path)
  if (efs) {
    const [, kind, id, policy] = efs
    const body = r.body ? JSON.parse(r.body) : {}
    const fsId = id ?? r.query.get('FileSystemId') ?? body.FileSystemId
    const fsArn = arn('elasticfilesystem', `file-system/${fsId}`)
    const requestTag = { 'aws:RequestTag/app': body.Tags?.find((t: { Key: string }) => t.Key === 'app')?.Value }
    if (policy)
      add(`elasticfilesystem:${r.method === 'PUT' ? 'Put' : 'Describe'}BackupPolicy`, [fsArn], await resourceTag(fsId))
    else if (kind === 'file-systems' && r.method === 'GET') add('elasticfilesystem:DescribeFileSystems', ['*'])
    else if (kind === 'file-systems') {
      add('elasticfilesystem:CreateFileSystem', [arn('elasticfilesystem', 'file-system/*')], requestTag)
      add('elasticfilesystem:TagResource', [arn('elasticfilesystem', 'file-system/*')], {
        'elasticfilesystem:CreateAction': 'CreateFileSystem',
      })
    } else if (kind === 'mount-targets' && r.method === 'GET')
      add('elasticfilesystem:DescribeMountTargets', [fsArn], await resourceTag(fsId))
    else if (kind === 'mount-targets') {
      // https://docs.aws.amazon.com/efs/latest/ug/API_CreateMountTarget.html: with the caller's EC2 permissions too.
      add('elasticfilesystem:CreateMountTarget', [fsArn], await resourceTag(fsId))
      add('ec2:DescribeSubnets', ['*'])
      add('ec2:DescribeNetworkInterfaces', ['*'])
      const groups = (body.SecurityGroups ?? []).map((g: string) => arn('ec2', `security-group/${g}`))
      add('ec2:CreateNetworkInterface', [
        arn('ec2', 'network-interface/*'),
        arn('ec2', `subnet/${body.SubnetId}`),
        ...groups,
      ])
    } else if (kind === 'access-points' && r.method === 'GET') {
      const point = r.query.get('AccessPointId')
      const resource = point ? arn('elasticfilesystem', `access-point/${point}`) : fsArn
      add('elasticfilesystem:DescribeAccessPoints', [resource], await resourceTag(point ?? fsId))
    } else {
      add('elasticfilesystem:CreateAccessPoint', [fsArn], await resourceTag(fsId))
      add('elasticfilesystem:CreateAccessPoint', [arn('elasticfilesystem', 'access-point/*')], requestTag)
      add('elasticfilesystem:TagResource', [arn('elasticfilesystem', 'access-point/*')], {
        'elasticfilesystem:CreateAction': 'CreateAccessPoint',
      })
    }
    return out
  }

  // AWS Backup (REST).
  if (/^\/resources\/.+\/recovery-points\/?$/.test(r.path))
    return [{ action: 'backup:ListRecoveryPointsByResource', resources: ['*'], from }]
  throw new Error(`no IAM mapping for ${from}`)
}

function lambdaOperation(method: string, part: string, version: string, collection: boolean): string {
  if (collection) return method === 'POST' ? 'CreateFunction' : 'ListFunctions'
  const key = `${method} ${part.replace(/^aliases\/.+/, 'aliases/*')}`
  const ops: Record<string, string> = {
    'GET ': 'GetFunction',
    'DELETE ': 'DeleteFunction',
    'GET configuration': 'GetFunctionConfiguration',
    'PUT configuration': 'UpdateFunctionConfiguration',
    'PUT code': 'UpdateFunctionCode',
    'GET versions': 'ListVersionsByFunction',
    'POST versions': 'PublishVersion',
    'GET aliases': 'ListAliases',
    'POST aliases': 'CreateAlias',
    'GET aliases/*': 'GetAlias',
    'PUT aliases/*': 'UpdateAlias',
    'GET url': 'GetFunctionUrlConfig',
    'POST url': 'CreateFunctionUrlConfig',
    'PUT url': 'UpdateFunctionUrlConfig',
    'GET policy': 'GetPolicy',
    'POST policy': 'AddPermission',
    'GET concurrency': 'GetFunctionConcurrency',
    'PUT concurrency': 'PutFunctionConcurrency',
    'DELETE concurrency': 'DeleteFunctionConcurrency',
    'POST invocations': 'InvokeFunction',
  }
  const op = ops[key]
  if (!op) throw new Error(`no Lambda operation for ${method} /${version}/functions/…/${part}`)
  return op
}
