// Lambda events as API Gateway and function URLs send them, built by small functions.
// Shapes: https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
// and https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html
import type { APIGatewayProxyEvent, APIGatewayProxyEventV2 } from 'aws-lambda'

export interface Call {
  method?: string
  path: string
  query?: string
  headers?: Record<string, string>
  body?: string
  base64?: boolean
}

const encode = (c: Call) =>
  c.body === undefined ? {} : { body: c.base64 ? Buffer.from(c.body).toString('base64') : c.body }

/** An HTTP API (payload 2.0) event; `stage` other than $default puts the stage in rawPath. */
export function httpApiEvent(c: Call, stage = '$default'): APIGatewayProxyEventV2 {
  const rawPath = stage === '$default' ? c.path : `/${stage}${c.path}`
  const method = c.method ?? 'GET'
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString: c.query ?? '',
    headers: Object.fromEntries(Object.entries(c.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
    requestContext: {
      accountId: '123456789012',
      apiId: 'api-id',
      domainName: 'id.execute-api.us-east-1.amazonaws.com',
      domainPrefix: 'id',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '192.0.2.1', userAgent: 'test' },
      requestId: 'id',
      routeKey: '$default',
      stage,
      time: '12/Mar/2020:19:03:58 +0000',
      timeEpoch: 1583348638390,
    },
    isBase64Encoded: Boolean(c.base64),
    ...encode(c),
  }
}

/** A Lambda function URL event: payload 2.0, on the $default stage, with cookies split out. */
export function functionUrlEvent(c: Call, cookies?: string[]): APIGatewayProxyEventV2 {
  const event = httpApiEvent(c)
  event.requestContext.domainName = 'abc.lambda-url.us-east-1.on.aws'
  event.requestContext.apiId = 'abc'
  return cookies ? { ...event, cookies } : event
}

/** A REST API (payload 1.0) event: `path` without the stage, multi-value maps for repeated keys. */
export function restApiEvent(c: Call, stage = 'prod'): APIGatewayProxyEvent {
  const query = new URLSearchParams(c.query ?? '')
  const multiValueQueryStringParameters: Record<string, string[]> = {}
  for (const [k, v] of query) (multiValueQueryStringParameters[k] ??= []).push(v)
  const headers = c.headers ?? {}
  return {
    resource: '/{proxy+}',
    path: c.path,
    httpMethod: c.method ?? 'GET',
    headers,
    multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])),
    queryStringParameters: query.size ? Object.fromEntries(query) : null,
    multiValueQueryStringParameters: query.size ? multiValueQueryStringParameters : null,
    pathParameters: { proxy: c.path.slice(1) },
    stageVariables: null,
    requestContext: {
      accountId: '123456789012',
      apiId: 'api-id',
      authorizer: null,
      protocol: 'HTTP/1.1',
      httpMethod: c.method ?? 'GET',
      identity: {} as APIGatewayProxyEvent['requestContext']['identity'],
      path: `/${stage}${c.path}`,
      stage,
      requestId: 'id',
      requestTimeEpoch: 1583348638390,
      resourceId: 'id',
      resourcePath: '/{proxy+}',
    },
    isBase64Encoded: Boolean(c.base64),
    body: null,
    ...encode(c),
  }
}
