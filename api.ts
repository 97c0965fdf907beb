// The buddy system API: one Lambda handler for API Gateway (REST and HTTP APIs) and Lambda function URLs, routing
// through a table. `tsx api.ts` serves the same handler on node:http. In the order a request takes: configuration,
// the handler, reading the event, matching the route, authenticating, parsing, the routes, answering; then the
// schemas, /openapi.json and the pages, and the local server last.
import type { IncomingMessage } from 'node:http'
import { pathToFileURL } from 'node:url'
import type {
  APIGatewayProxyEvent,
  APIGatewayProxyEventV2,
  APIGatewayProxyResult,
  APIGatewayProxyStructuredResultV2,
} from 'aws-lambda'
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose'
// zod/mini: the same validation as zod, in functions that esbuild can leave out when unused, where zod's
// methods all come along (https://zod.dev/packages/mini); English messages only, as a namespace import of
// `zod` would load every locale (https://github.com/openai/openai-node/pull/1703).
import { en } from 'zod/locales'
import * as z from 'zod/mini'
import * as store from './db.ts'

z.config(en())

// Configuration: the token key, read once (a missing or weak one stops the cold start), and the CORS origins.

const TOKEN_SECONDS = 3600
const jwtKey = new TextEncoder().encode(loadJwtKey())

function loadJwtKey(): string {
  const key = process.env.JWT_KEY
  // A key of few distinct characters is one a person typed, not one generated: `openssl rand -hex 32` gives 64
  // characters of 16 kinds, and fewer than 10 kinds among them happens about once in 10^13 keys.
  if (key && key.length >= 32 && new Set(key).size >= 10) return key
  if (key && key.length >= 32)
    throw new Error('JWT_KEY is too weak (too few distinct characters): generate one with `openssl rand -hex 32`')
  if (key) throw new Error('JWT_KEY must be at least 32 characters: generate one with `openssl rand -hex 32`')
  if (process.env.AWS_LAMBDA_FUNCTION_NAME) {
    throw new Error('JWT_KEY is not set: the function cannot sign or verify tokens without it')
  }
  console.warn('JWT_KEY is not set: signing tokens with a random key, valid until this process stops')
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('hex')
}

/** CORS_ORIGINS: by default the React client's development server on a person's machine, and on Lambda no origin at
 * all: a deployment trusts only what it was told. */
function corsOrigins(): string[] {
  const text = process.env.CORS_ORIGINS ?? (process.env.AWS_LAMBDA_FUNCTION_NAME ? '' : 'http://localhost:5173')
  return text
    .split(',')
    .map((origin) => origin.trim())
    .filter(Boolean)
}

// The handler

/** True until the first request of this process (a Lambda container's cold start) has been answered. */
let coldStart = true

export async function handler(event: Event): Promise<Result> {
  const started = performance.now()
  const cold = coldStart
  coldStart = false
  let req: Request | undefined
  let result: Result
  try {
    req = toRequest(event)
    result = await answer(req)
  } catch (error) {
    // An event that is not one (400), or a body too large (413); anything else is logged and a bare 500.
    result = toResult(failure(req ?? { method: '?', path: '?' }, error), {})
  }
  // On Lambda, one line per request in the function's log (the local server writes its own). With the JSON log
  // format, the runtime puts this object under the line's `message`, beside its time, level and request ID, so that
  // a filter pattern reads it: { $.message.status >= 500 }. Never a header, a query or a body: no token, no password.
  // https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html
  if (process.env.AWS_LAMBDA_FUNCTION_NAME) {
    console.log({
      method: req?.method ?? null,
      route: req?.route ?? null,
      status: result.statusCode,
      ms: Math.round((performance.now() - started) * 10) / 10,
      cold,
      source: req?.sourceIp || null,
    } satisfies RequestLine)
  }
  return result
}

/** What the API logs of each request (README, Logs). */
interface RequestLine {
  method: string | null
  /** The route's pattern (`/animals/{animal_id}`), null where none matched. */
  route: string | null
  status: number
  ms: number
  /** The first request of this container. */
  cold: boolean
  /** The client's address, as API Gateway or the function URL saw it. */
  source: string | null
}

async function answer(req: Request): Promise<Result> {
  if (req.method === 'OPTIONS' && req.headers['access-control-request-method']) {
    return toResult(preflight(req), {})
  }
  let res: Response
  try {
    res = await dispatch(req)
  } catch (error) {
    res = failure(req, error)
  }
  const result = toResult(res, corsHeaders(req))
  return req.method === 'HEAD' ? { ...result, body: '' } : result
}

// Reading the event: one function per shape. Payload 2.0 (HTTP APIs, function URLs) carries requestContext.http,
// payload 1.0 (REST APIs, HTTP APIs set to 1.0) httpMethod and multi-value maps.
// https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
interface Request {
  method: string
  path: string
  query: URLSearchParams
  headers: Record<string, string>
  body: string
  /** The client's address as API Gateway or the function URL saw it (the socket's, locally): never a header. */
  sourceIp: string
  /** The pattern of the route that matched, once one has: for the log. */
  route?: string
}

type Event = APIGatewayProxyEvent | APIGatewayProxyEventV2
type Result = APIGatewayProxyResult & APIGatewayProxyStructuredResultV2

function toRequest(event: Event): Request {
  if (!isObject(event)) throw badEvent('not an object')
  const body = eventBody(event)
  const context = isObject(event.requestContext) ? (event.requestContext as Record<string, unknown>) : {}
  return isObject(context.http)
    ? fromHttpApi(event as APIGatewayProxyEventV2, context, body)
    : fromRestApi(event as APIGatewayProxyEvent, context, body)
}

function fromHttpApi(event: APIGatewayProxyEventV2, context: Record<string, unknown>, body: string): Request {
  const http = context.http as Record<string, unknown>
  const rawPath = event.rawPath ?? http.path
  if (!isString(http.method) || !isString(rawPath) || !rawPath.startsWith('/')) throw badEvent('no method or path')
  if (event.rawQueryString != null && !isString(event.rawQueryString)) throw badEvent('rawQueryString is not a string')
  const headers: Record<string, string> = {}
  for (const [name, value] of stringMap(event.headers, 'header')) headers[name.toLowerCase()] = value
  if (event.cookies != null) {
    if (!Array.isArray(event.cookies) || !event.cookies.every(isString)) throw badEvent('cookies are not strings')
    if (event.cookies.length) headers.cookie = event.cookies.join('; ')
  }
  // An HTTP API's rawPath starts with its named stage (/prod/animals) on the API's own execute-api domain,
  // not on a custom domain, whose API mapping takes the stage out: strip it only where it is there.
  // https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-stages.html
  const { stage, domainName } = context
  const onExecuteApi = isString(domainName) && /\.execute-api\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$/.test(domainName)
  const staged =
    isString(stage) && stage !== '$default' && (rawPath === `/${stage}` || rawPath.startsWith(`/${stage}/`))
  const path = onExecuteApi && staged ? rawPath.slice(stage.length + 1) || '/' : rawPath
  const query = new URLSearchParams(event.rawQueryString ?? '')
  return {
    method: http.method,
    path: trimSlash(path),
    query,
    headers,
    body,
    sourceIp: isString(http.sourceIp) ? http.sourceIp : '',
  }
}

function fromRestApi(event: APIGatewayProxyEvent, context: Record<string, unknown>, body: string): Request {
  if (!isString(event.httpMethod) || !isString(event.path) || !event.path.startsWith('/'))
    throw badEvent('no method or path')
  const headers: Record<string, string> = {}
  for (const [name, value] of stringMap(event.headers, 'header')) headers[name.toLowerCase()] = value
  for (const [name, values] of multiValues(event.multiValueHeaders, 'header')) {
    if (values.length) headers[name.toLowerCase()] = values.join(',')
  }
  const query = new URLSearchParams()
  const multi = multiValues(event.multiValueQueryStringParameters, 'query parameter')
  for (const [name, values] of multi) for (const value of values) query.append(name, value)
  const inMulti = new Set(multi.map(([name]) => name))
  for (const [name, value] of stringMap(event.queryStringParameters, 'query parameter')) {
    if (!inMulti.has(name)) query.append(name, value)
  }
  // A REST API's `path` leaves the stage out; requestContext.path has it.
  const identity = isObject(context.identity) ? context.identity : {}
  const sourceIp = isString(identity.sourceIp) ? identity.sourceIp : ''
  return { method: event.httpMethod, path: trimSlash(event.path), query, headers, body, sourceIp }
}

/** A multi-value map of a payload-1.0 event, checked: null values are left out, others must be lists of strings. */
function multiValues(value: unknown, what: string): [string, string[]][] {
  if (value == null) return []
  if (!isObject(value)) throw badEvent(`multi-value ${what}s are not an object`)
  const entries: [string, string[]][] = []
  for (const [name, values] of Object.entries(value)) {
    if (values == null) continue
    if (!Array.isArray(values) || !values.every(isString))
      throw badEvent(`${what} ${name.slice(0, 100)} is not a list of strings`)
    entries.push([name, values])
  }
  return entries
}

/** A malformed event: a 400 that says so, never a JavaScript message. */
const badEvent = (what: string) => new HttpError(400, `Bad Request: not an API Gateway or function URL event (${what})`)
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x)
const isString = (x: unknown): x is string => typeof x === 'string'

/** A string map of the event (headers, query parameters), checked: null values are left out, others must be strings. */
function stringMap(value: unknown, what: string): [string, string][] {
  if (value == null) return []
  if (!isObject(value)) throw badEvent(`${what} is not an object`)
  const entries: [string, string][] = []
  for (const [name, item] of Object.entries(value)) {
    if (item == null) continue
    if (!isString(item)) throw badEvent(`${what} ${name.slice(0, 100)} is not a string`)
    entries.push([name, item])
  }
  return entries
}

/** The largest body taken: a larger one answers 413 before it is decoded or parsed (API.md, Limits). */
const MAX_BODY = 64 * 1024
const tooLarge = () => new HttpError(413, 'request body too large')

/** The event's body as text, refused past MAX_BODY bytes: a base64 text is measured before it is decoded. */
function eventBody(event: Event): string {
  if (event.body == null || event.body === '') return ''
  if (!isString(event.body)) throw badEvent('body is not a string')
  if (!event.isBase64Encoded) {
    if (event.body.length > MAX_BODY || Buffer.byteLength(event.body) > MAX_BODY) throw tooLarge()
    return event.body
  }
  if (event.body.length > Math.ceil(MAX_BODY / 3) * 4) throw tooLarge() // base64: 4 characters for 3 bytes
  const bytes = Buffer.from(event.body, 'base64')
  if (bytes.length > MAX_BODY) throw tooLarge()
  return bytes.toString('utf8')
}

/** One trailing slash goes (/animals/ is /animals); `//` and the like stay, and match no route. */
const trimSlash = (path: string) =>
  path.length > 1 && path.endsWith('/') && !path.endsWith('//') ? path.slice(0, -1) : path

// Matching the route: the table compiled into patterns on the first request; a known path with another method is a 405.

interface CompiledRoute {
  route: Route
  /** The names of the path's parameters, {user_id} and the like, in order. */
  names: string[]
  pattern: RegExp
}
let compiled: CompiledRoute[] | undefined
const routeTable = () =>
  (compiled ??= routes().map((route) => ({
    route,
    names: [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]),
    // Each {name} matches one segment; everything else is literal (the `.` of /openapi.json included).
    pattern: new RegExp(
      `^${route.path
        .split(/\{\w+\}/)
        .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('([^/]+)')}$`,
    ),
  })))

/** The methods a path answers: HEAD wherever GET is (RFC 9110 §9.3.2). */
function methodsOf(path: string): string[] {
  const methods = new Set(
    routeTable()
      .filter((e) => e.pattern.test(path))
      .map((e) => e.route.method as string),
  )
  if (methods.has('GET')) methods.add('HEAD')
  return [...methods]
}

/** The route of the request's method and path, and the text of its path parameters; else 404, or 405 with Allow. */
function match(req: Request): { entry: CompiledRoute; values: string[] } {
  const method = req.method === 'HEAD' ? 'GET' : req.method // HEAD answers as GET does; answer() drops the body
  for (const entry of routeTable()) {
    const found = entry.route.method === method && entry.pattern.exec(req.path)
    if (found) return { entry, values: found.slice(1) }
  }
  const allow = methodsOf(req.path)
  if (!allow.length) throw new HttpError(404, 'Not Found')
  throw new HttpError(405, 'Method Not Allowed', { allow: allow.join(', ') })
}

/** Match, authenticate, check who may call it, parse, run. */
async function dispatch(req: Request): Promise<Response> {
  const { entry, values } = match(req)
  const { route } = entry
  req.route = route.path
  let conn: Promise<store.Database> | undefined
  const db = () => (conn ??= store.database())
  const user = route.access === 'anyone' ? undefined : await authenticate(req, db)
  const ids = pathIds(entry.names, values)
  if (user && !user.is_staff && (route.access === 'staff' || (route.access === 'self' && ids.user_id !== user.id))) {
    throw new HttpError(403, 'Forbidden')
  }
  const { query, body } = input(route, req)
  return route.run({ sourceIp: req.sourceIp, ids, body, query, me: async () => user!, db })
}

// Authenticating

// Tokens: HS256 JWTs that name their user (sub), this API (issuer, audience, type) and the version of the user's
// password they were issued under, which a change of password moves on (db.ts).
const TOKEN = { issuer: 'buddy-system', audience: 'buddy-system-api', typ: 'at+jwt' } // RFC 9068's access token type
const PASSWORD_VERSION = 'pwv'
// A JWT's three parts in base64url without padding (RFC 7515 §2), each in its one canonical form: a string with other
// bits in its last character decodes to the same bytes, and is refused, so that a token has one spelling only.
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
const canonical = (token: string) =>
  token.split('.').every((part) => Buffer.from(part, 'base64url').toString('base64url') === part)

async function authenticate(req: Request, db: () => Promise<store.Database>): Promise<store.User> {
  const authorization = req.headers.authorization ?? ''
  if (!/^bearer\s/i.test(authorization)) throw new HttpError(401, 'Not authenticated', { 'www-authenticate': 'Bearer' })
  // Exactly one token, as RFC 6750 §2.1 writes it: "Bearer" 1*SP b64token, and nothing after it.
  const token = /^bearer +(\S+)$/i.exec(authorization)?.[1]
  if (!token || !JWT.test(token) || !canonical(token)) throw invalidToken('invalid bearer token')
  let payload: { sub?: string; [PASSWORD_VERSION]?: unknown }
  try {
    // Only HS256 with our key (`alg: none` and every other algorithm are refused), issued by and for this API, at most
    // an hour ago whatever its exp says.
    ;({ payload } = await jwtVerify(token, jwtKey, {
      algorithms: ['HS256'],
      ...TOKEN,
      maxTokenAge: TOKEN_SECONDS,
      requiredClaims: ['sub', 'exp', 'iat', PASSWORD_VERSION],
    }))
  } catch (error) {
    if (error instanceof joseErrors.JWTExpired) throw invalidToken('expired bearer token')
    throw invalidToken('invalid bearer token')
  }
  const id = /^\d+$/.test(payload.sub ?? '') ? Number(payload.sub) : NaN
  const account = Number.isSafeInteger(id) ? await store.getAccount(await db(), id) : undefined
  // A user who is gone, or who changed their password after this token was issued.
  if (!account || payload[PASSWORD_VERSION] !== account.passwordVersion) throw invalidToken('invalid bearer token')
  return account.user
}

// Parsing

type Location = 'body' | 'query' | 'path'

// What a 422 echoes is bounded, so that no error answer is large (a Lambda answer may not pass 6 MB):
// the first problems, and of each input only a short text, number or boolean, never an object or list.
const MAX_ISSUES = 20
const MAX_ECHO = 100

/** A 422 in the first version's shape: one entry per problem. Passwords, and whole bodies, are never echoed. */
function invalid(where: Location, issues: z.core.$ZodIssue[]): HttpError {
  return new HttpError(
    422,
    issues.slice(0, MAX_ISSUES).map((issue) => {
      const missing = issue.input === undefined && issue.path.length > 0
      const secret = issue.path.length === 0 || issue.path.some((key) => SECRETS.includes(String(key)))
      return {
        type: missing ? 'missing' : issue.code === 'invalid_union' ? 'invalid_value' : issue.code,
        loc: [where, ...issue.path.slice(0, 5).map((key) => String(key).slice(0, MAX_ECHO))],
        msg: missing ? 'Field required' : issue.message,
        ...(missing || secret ? {} : echo(issue.input)),
      }
    }),
  )
}

const SECRETS = ['password', 'current_password', 'new_password', 'client_secret']

function echo(input: unknown): { input?: unknown } {
  if (typeof input === 'string') return { input: input.length > MAX_ECHO ? `${input.slice(0, MAX_ECHO)}…` : input }
  if (typeof input === 'number' || typeof input === 'boolean' || input === null) return { input }
  return {}
}

function parse<T>(schema: z.ZodMiniType<T>, value: unknown, where: Location): T {
  const result = schema.safeParse(value, { reportInput: true })
  if (!result.success) throw invalid(where, result.error.issues)
  return result.data
}

/** The path's ids as numbers (a 422 for any that is not one). */
function pathIds(names: string[], values: string[]): Record<string, number> {
  const ids: Record<string, number> = {}
  const issues: z.core.$ZodIssue[] = []
  names.forEach((name, i) => {
    if (DIGITS.test(values[i])) return void (ids[name] = Number(values[i]))
    const result = pathId().safeParse(decodePath(values[i]), { reportInput: true })
    if (result.success) ids[name] = result.data
    else issues.push(...result.error.issues.map((issue) => ({ ...issue, path: [name] })))
  })
  if (issues.length) throw invalid('path', issues)
  return ids
}

/** The query and the body, each through its schema. A body only in the media type its route reads (415): another
 * site's plain HTML form cannot post to a JSON route. */
function input(route: Route, req: Request): { query: unknown; body: unknown } {
  const query = route.query && parse(route.query(), Object.fromEntries(req.query), 'query')
  const type = route.body ? 'application/json' : route.form ? 'application/x-www-form-urlencoded' : undefined
  if (type && mediaType(req) !== type) throw new HttpError(415, 'Unsupported Media Type')
  if (route.body) return { query, body: parse(route.body(), parseJson(req.body), 'body') }
  if (route.form) return { query, body: parse(route.form(), Object.fromEntries(new URLSearchParams(req.body)), 'body') }
  return { query, body: undefined }
}

/** A path segment decoded; as it came when its percent-encoding is broken, for the 422 to show. */
function decodePath(segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}

function parseJson(text: string): unknown {
  if (!text.trim()) return undefined
  try {
    return JSON.parse(text)
  } catch (error) {
    // Not V8's message: it quotes the body, which may hold a password. Its position alone, where it gives one.
    const at = /position (\d+)/.exec((error as Error).message)?.[1]
    throw new HttpError(422, [
      { type: 'json_invalid', loc: ['body'], msg: `JSON decode error${at ? ` at position ${at}` : ''}` },
    ])
  }
}

/** The media type of the body, without parameters, in lowercase: media types are case-insensitive (RFC 9110 §8.3.1). */
const mediaType = (req: Request) => (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()

// The routes

interface Response {
  status: number
  body?: unknown
  html?: string
  headers?: Record<string, string>
}
interface Context<B, Q> {
  /** The client's address (Request.sourceIp), for the limits per address. */
  sourceIp: string
  ids: Record<string, number>
  body: B
  query: Q
  /** The user of the request's bearer token, on a route that needs one. */
  me(): Promise<store.User>
  db(): Promise<store.Database>
}
/** Who may call a route (API.md, Access): anyone; any user with a valid bearer token; the user that the path's
 * {user_id} names, or staff; staff only. Checked before the route runs: 401 without a token, 403 with the wrong one. */
type Access = 'anyone' | 'user' | 'self' | 'staff'
const ACCESS: Record<Access, string> = {
  anyone: 'Anyone, without a token.',
  user: 'Any user, with their bearer token.',
  self: 'The user that user_id names, or staff.',
  staff: 'Staff only.',
}
interface Route<B = any, Q = any> {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  path: string
  summary: string
  access: Access
  // Schemas as functions that build them: a cold start builds only what its first request reads (BENCHMARKS.md).
  body?: () => z.ZodMiniType<B>
  form?: () => z.ZodMiniType<B>
  query?: () => z.ZodMiniObject & z.ZodMiniType<Q>
  /** For /openapi.json only. */
  response?: () => z.ZodMiniType
  run(ctx: Context<B, Q>): Promise<Response>
}
const route = <B = undefined, Q = undefined>(r: Route<B, Q>) => r
const ok = (body: unknown): Response => ({ status: 200, body })
const noContent: Response = { status: 204 }

/** The routes, in the order a reader meets them: built on the first request; each schema when a request first reads it. */
function routes(): Route[] {
  return [
    route({
      method: 'GET',
      path: '/',
      access: 'anyone',
      summary: 'A page about this API',
      run: async () => ({ status: 200, html: HOME_PAGE }),
    }),
    route({
      method: 'GET',
      path: '/greet',
      access: 'anyone',
      summary: 'A greeting',
      response: () => z.object({ greeting: z.string() }),
      run: async () => ok({ greeting: 'hello to nobody' }),
    }),
    route({
      method: 'GET',
      path: '/openapi.json',
      access: 'anyone',
      summary: 'This document',
      run: async () => ok((openApiDocument ??= buildOpenApi())),
    }),
    route({
      method: 'GET',
      path: '/docs',
      access: 'anyone',
      summary: 'An interactive page for this document (Swagger UI)',
      run: async () => ({ status: 200, html: DOCS_PAGE }),
    }),
    route({
      method: 'POST',
      path: '/auth/registration',
      access: 'anyone',
      summary: 'Create a user',
      body: Registration,
      response: User,
      async run({ body, sourceIp, db }) {
        const conn = await db()
        const wait = await store.addressWait(conn, sourceIp, 'registration')
        if (wait) throw tooMany('too many registrations: try again later', wait)
        await refuseCommon(conn, body.password, 'password')
        await store.recordAddressEvent(conn, sourceIp, 'registration')
        const passwordHash = await store.hashPassword(body.password)
        const created_at = new Date().toISOString().slice(0, 19)
        try {
          return ok(await store.createUser(conn, { ...body, passwordHash, created_at }))
        } catch (error) {
          const field = store.isUniqueViolation(error) && (await store.takenField(conn, body))
          if (!field) throw error
          throw new HttpError(422, {
            type: 'duplicate_value',
            entity_name: 'User',
            entity_field: field,
            entity_field_value: body[field],
          })
        }
      },
    }),
    route({
      method: 'POST',
      path: '/auth/token',
      access: 'anyone',
      summary: 'Log in: trade a username and password for a bearer token',
      form: TokenForm,
      response: () => z.object({ access_token: z.string(), token_type: z.literal('Bearer'), expires_in: z.int() }),
      async run({ body, sourceIp, db }) {
        const conn = await db()
        const failures = await refuseWhileWaiting(conn, sourceIp, body.username)
        const login = await store.findLogin(conn, body.username)
        // An unknown user costs one hash, as a wrong password does, from the first request on: timing tells nothing.
        const valid = await store.verifyPassword(body.password, login?.passwordHash ?? store.DUMMY_PASSWORD_HASH)
        if (!login || !valid) {
          await countFailedLogin(conn, sourceIp, body.username)
          throw new HttpError(
            401,
            { error: 'invalid_client', error_description: 'invalid username or password' },
            NO_STORE,
          )
        }
        if (failures) await store.clearLoginFailures(conn, body.username) // a write only where there is a count to clear
        const access_token = await new SignJWT({ [PASSWORD_VERSION]: login.passwordVersion })
          .setProtectedHeader({ alg: 'HS256', typ: TOKEN.typ })
          .setIssuer(TOKEN.issuer)
          .setAudience(TOKEN.audience)
          .setSubject(String(login.user.id))
          .setIssuedAt()
          .setExpirationTime(`${TOKEN_SECONDS}s`)
          .sign(jwtKey)
        return {
          status: 200,
          body: { access_token, token_type: 'Bearer', expires_in: TOKEN_SECONDS },
          headers: NO_STORE,
        }
      },
    }),
    route({
      method: 'GET',
      path: '/users',
      access: 'staff',
      summary: 'Users, by id, a page at a time',
      query: Page,
      response: () => z.object({ meta: PageMeta(), users: z.array(User()) }),
      async run({ query, db }) {
        const { count, users } = await store.listUsers(await db(), query)
        return ok({ meta: { count, limit: query.limit, offset: query.offset }, users })
      },
    }),
    route({
      method: 'PUT',
      path: '/users/me/password',
      access: 'user',
      summary: 'Change your password: every token issued before is refused from then on',
      body: PasswordChange,
      async run({ body, sourceIp, me, db }) {
        const conn = await db()
        const { id, username } = await me()
        // A wrong current password is a failed login: the same limits, the same count.
        await refuseWhileWaiting(conn, sourceIp, username)
        const account = await store.getAccount(conn, id)
        if (!account || !(await store.verifyPassword(body.current_password, account.passwordHash))) {
          await countFailedLogin(conn, sourceIp, username)
          throw new HttpError(403, 'Forbidden')
        }
        await refuseCommon(conn, body.new_password, 'new_password')
        await store.changePassword(conn, account.user.id, await store.hashPassword(body.new_password))
        return noContent
      },
    }),
    route({
      method: 'GET',
      path: '/users/me',
      access: 'user',
      summary: 'The user of the bearer token',
      response: () => z.object({ user: User() }),
      run: async ({ me }) => ok({ user: await me() }),
    }),
    route({
      method: 'GET',
      path: '/users/{user_id}',
      access: 'self',
      summary: 'One user',
      response: () => z.object({ user: User() }),
      async run({ ids, db }) {
        return ok({ user: await findUser(await db(), ids.user_id) })
      },
    }),
    route({
      method: 'DELETE',
      path: '/users/{user_id}',
      access: 'self',
      summary: 'Delete a user, with their fosters; their pets lose their adopter',
      async run({ ids, db }) {
        if (!(await store.deleteUser(await db(), ids.user_id))) throw notFound('User', ids.user_id)
        return noContent
      },
    }),
    route({
      method: 'GET',
      path: '/users/{user_id}/fosters',
      access: 'self',
      summary: "A user's fosters",
      query: Page,
      response: () =>
        z.object({
          meta: PageMeta(),
          fosters: z.array(
            z.object({ animal: Animal(), user: User(), start_date: z.iso.date(), end_date: z.nullable(z.iso.date()) }),
          ),
        }),
      async run({ ids, query, db }) {
        const conn = await db()
        const { count, fosters } = await store.listFosters(conn, await findUser(conn, ids.user_id), query)
        return ok({ meta: { count, ...query }, fosters })
      },
    }),
    route({
      method: 'GET',
      path: '/users/{user_id}/pets',
      access: 'self',
      summary: 'The animals a user adopted',
      query: Page,
      response: () => z.object({ meta: PageMeta(), animals: z.array(Animal()) }),
      async run({ ids, query, db }) {
        const conn = await db()
        await findUser(conn, ids.user_id)
        const { count, animals } = await store.listPets(conn, ids.user_id, query)
        return ok({ meta: { count, ...query }, animals })
      },
    }),
    route({
      method: 'GET',
      path: '/animals',
      access: 'anyone',
      summary: 'Animals, sorted and filtered by intake date, a page at a time',
      query: AnimalList,
      response: () => z.object({ meta: PageMeta(), animals: z.array(Animal()) }),
      async run({ query, db }) {
        const { count, animals } = await store.listAnimals(await db(), query)
        return ok({ meta: { count, limit: query.limit, offset: query.offset }, animals })
      },
    }),
    route({
      method: 'POST',
      path: '/animals',
      access: 'staff',
      summary: 'Take in an animal: its intake date is today',
      body: AnimalCreate,
      response: () => z.object({ animal: Animal() }),
      async run({ body, db }) {
        const intake_date = new Date().toISOString().slice(0, 10)
        return ok({ animal: await store.createAnimal(await db(), { ...body, intake_date }) })
      },
    }),
    route({
      method: 'GET',
      path: '/animals/{animal_id}',
      access: 'anyone',
      summary: 'One animal',
      response: () => z.object({ animal: Animal() }),
      async run({ ids, db }) {
        const animal = await store.getAnimal(await db(), ids.animal_id)
        if (!animal) throw notFound('Animal', ids.animal_id)
        return ok({ animal })
      },
    }),
    route({
      method: 'PUT',
      path: '/animals/{animal_id}',
      access: 'staff',
      summary: "Change some of an animal's fields; the others stay as they are",
      body: AnimalUpdate,
      response: () => z.object({ animal: Animal() }),
      async run({ ids, body, db }) {
        const conn = await db()
        const current = await store.getAnimal(conn, ids.animal_id)
        if (!current) throw notFound('Animal', ids.animal_id)
        if (body.adopter_id != null) await findUser(conn, body.adopter_id)
        // Clearing the adopter clears the date; then the two must go together, and the date make sense.
        const changes = body.adopter_id === null ? { ...body, adoption_date: null } : body
        checkAdoption(current, { ...current, ...definedOf(changes) })
        const animal = await store.updateAnimal(conn, ids.animal_id, changes)
        if (!animal) throw notFound('Animal', ids.animal_id)
        return ok({ animal })
      },
    }),
    route({
      method: 'DELETE',
      path: '/animals/{animal_id}',
      access: 'staff',
      summary: 'Delete an animal and its fosters',
      async run({ ids, db }) {
        if (!(await store.deleteAnimal(await db(), ids.animal_id))) throw notFound('Animal', ids.animal_id)
        return noContent
      },
    }),
  ]
}

// Limits (API.md): a 429 costs no password hash, so it comes before one.

const tooMany = (detail: string, waitMs: number) =>
  new HttpError(429, detail, { 'retry-after': String(Math.ceil(waitMs / 1000)) })

/** 429 while the account (after its free failures) or the source address (past its limit) must wait; else how many
 * failed logins the account has, for a right password to clear. */
async function refuseWhileWaiting(db: store.Database, sourceIp: string, username: string): Promise<number> {
  const account = await store.failedLogins(db, username)
  const wait = Math.max(account.wait, await store.addressWait(db, sourceIp, 'failed_login'))
  if (wait) throw tooMany('too many failed logins: try again later', wait)
  return account.count
}

/** Counts a failed login for the account and the address, and logs it: who was tried, from where (never the password). */
async function countFailedLogin(db: store.Database, sourceIp: string, username: string): Promise<void> {
  await store.recordLoginFailure(db, username)
  await store.recordAddressEvent(db, sourceIp, 'failed_login')
  console.warn({ what: 'failed login', username: username.slice(0, 100), source: sourceIp || null })
}

// A token answer is never cached (RFC 6749 §5.1).
const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' }
let openApiDocument: object | undefined

/** An adoption that makes sense (API.md, Limits): adopter and date together, the date from the intake to today (UTC). */
function checkAdoption(before: store.Animal, after: store.Animal) {
  const problem = (field: string, msg: string) =>
    new HttpError(422, [{ type: 'adoption_invalid', loc: ['body', field], msg }])
  if ((after.adopter_id === null) !== (after.adoption_date === null)) {
    throw problem(
      after.adopter_id === null ? 'adopter_id' : 'adoption_date',
      'adopter_id and adoption_date go together: set both, or set adopter_id to null',
    )
  }
  const date = after.adoption_date
  if (date !== null && date < before.intake_date)
    throw problem('adoption_date', `The adoption date is before the intake date, ${before.intake_date}`)
  if (date !== null && date > new Date().toISOString().slice(0, 10))
    throw problem('adoption_date', 'The adoption date is after today (UTC)')
}

const definedOf = <T extends object>(o: T) =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>

async function findUser(db: store.Database, id: number): Promise<store.User> {
  const user = await store.getUser(db, id)
  if (!user) throw notFound('User', id)
  return user
}

/** A password among the most commonly used ones is refused (422), as NIST SP 800-63B §3.1.1.2 asks of a verifier.
 * The list is zxcvbn-ts's (its most frequent passwords, from leaks), which the seeder keeps in the database: one
 * indexed lookup, and the package does not carry it. */
async function refuseCommon(conn: store.Database, password: string, field: string): Promise<void> {
  if (!(await store.isCommonPassword(conn, password))) return
  throw new HttpError(422, [
    {
      type: 'password_too_common',
      loc: ['body', field],
      msg: 'This password is among the most commonly used: choose another',
    },
  ])
}

// Answering: errors (thrown anywhere behind the handler, turned into a response in one place), CORS, headers.

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly detail: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super(typeof detail === 'string' ? detail : JSON.stringify(detail))
  }
}

const notFound = (entity: 'Animal' | 'User', id: number) =>
  new HttpError(404, { type: 'entity_not_found', entity_name: entity, entity_id: id })

const invalidToken = (description: string) =>
  new HttpError(
    401,
    { error: 'invalid_client', error_description: description },
    { 'www-authenticate': 'Bearer error="invalid_token"' },
  )

/** The answer to what a route threw: ours (HttpError), the database's state (503), a request PostgreSQL refused
 * (409, 422), else a bare 500 whose cause goes to the log only. */
function failure(req: Pick<Request, 'method' | 'path' | 'route'>, error: unknown): Response {
  if (error instanceof HttpError)
    return { status: error.status, body: { detail: error.detail }, headers: error.headers }
  // The cause goes to the log, as one object (the runtime writes an Error in it as errorType, errorMessage and
  // stackTrace); the caller learns only to come back (503) or that it failed (500).
  const log = (what: string, cause: unknown) =>
    console.error({ method: req.method, route: req.route ?? null, what, cause })
  if (error instanceof store.SchemaError) {
    // The schema is deploy.ts's work (its seeder applies the migrations), never a cold start's.
    log("the database schema is not this release's", error.message)
    return { status: 503, body: { detail: 'Service Unavailable' }, headers: { 'retry-after': '60' } }
  }
  if (store.isUnavailable(error)) {
    log('the database is unavailable', (error as Error).message)
    return { status: 503, body: { detail: 'Service Unavailable' }, headers: { 'retry-after': '5' } }
  }
  const fault = store.requestFault(error)
  if (fault) return { status: fault.status, body: { detail: fault.detail } }
  log('failed', error)
  return { status: 500, body: { detail: 'Internal Server Error' } }
}

/** A listed origin is echoed, with credentials; with `*` listed, any other origin gets `*`, without credentials
 * (https://fetch.spec.whatwg.org/#cors-protocol-and-credentials). What depends on Origin says so in Vary. */
function corsHeaders(req: Request): Record<string, string> {
  const origin = req.headers.origin
  if (!origin) return {}
  const allowed = corsOrigins()
  const listed = allowed.some((o) => o !== '*')
  const vary: Record<string, string> = listed ? { vary: 'Origin' } : {}
  if (allowed.includes(origin) && origin !== '*') {
    return { 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true', ...vary }
  }
  if (allowed.includes('*')) return { 'access-control-allow-origin': '*', ...vary }
  return vary
}

/** A CORS preflight, answered without touching the database. */
function preflight(req: Request): Response {
  const cors = corsHeaders(req)
  if (!cors['access-control-allow-origin'])
    return { status: 400, body: { detail: 'Disallowed CORS origin' }, headers: cors }
  const asked = req.headers['access-control-request-headers']
  return {
    status: 204,
    headers: {
      ...cors,
      ...(asked ? { vary: [cors.vary, 'Access-Control-Request-Headers'].filter(Boolean).join(', ') } : {}),
      'access-control-allow-methods': 'GET, POST, PUT, DELETE, OPTIONS',
      'access-control-allow-headers': asked || '*',
      'access-control-max-age': '600',
    },
  }
}

// On every answer (API.md, Limits): no sniffing of content types, no referrer, no framing; HSTS where the API is on
// HTTPS, as on Lambda (function URLs serve HTTPS only); for the HTML pages, a Content-Security-Policy (HTML_POLICY).
const SAFE_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
}
const HSTS = { 'strict-transport-security': 'max-age=31536000; includeSubDomains' }

function toResult(res: Response, extraHeaders: Record<string, string>): Result {
  const headers: Record<string, string> = {
    ...res.headers,
    ...extraHeaders,
    ...SAFE_HEADERS,
    ...(process.env.AWS_LAMBDA_FUNCTION_NAME ? HSTS : {}),
  }
  let body = ''
  if (res.html !== undefined) {
    headers['content-type'] = 'text/html; charset=utf-8'
    headers['content-security-policy'] = HTML_POLICY
    body = res.html
  } else if (res.body !== undefined) {
    headers['content-type'] = 'application/json; charset=utf-8'
    body = JSON.stringify(res.body)
  }
  return { statusCode: res.status, headers, body, isBase64Encoded: false }
}

// Schemas: they validate requests and describe them in /openapi.json. Lenient as the first
// version was: its React client sends numbers as strings ("3") and booleans as "true".
// Each is a function that builds it, the first time a route reads it (`once`): zod builds a schema by running code,
// and a cold start then builds only its own route's (none for GET /animals/1: BENCHMARKS.md).

function once<T>(build: () => T): () => T {
  let built: T | undefined
  return () => (built ??= build())
}

const INT = /^\s*-?\d+\s*$/
const int = (min: number, max: number) =>
  z.pipe(
    z.union([z.int(), z.pipe(z.string().check(z.regex(INT)), z.transform(Number))], {
      error: 'Input should be a valid integer',
    }),
    z.number().check(z.minimum(min), z.maximum(max)),
  )
const bool = () =>
  z.union(
    [
      z.boolean(),
      z.pipe(
        z.enum(['true', 'false']),
        z.transform((v) => v === 'true'),
      ),
    ],
    {
      error: 'Input should be a valid boolean',
    },
  )
const pathId = once(() => int(0, Number.MAX_SAFE_INTEGER))
const DIGITS = /^\d{1,15}$/
// What both databases can hold: PostgreSQL's text refuses NUL, and its dates year 0 (https://www.postgresql.org/docs/current/datatype-datetime.html);
// neither keeps a lone UTF-16 surrogate (each would become U+FFFD). SQLite would take all three.
const HOLDABLE = /\0|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
const holdable = () =>
  z.refine<string>((s) => !HOLDABLE.test(s), {
    error: 'Input should not contain NUL characters or unpaired surrogates',
  })
const str = () => z.string().check(holdable())
const date = () =>
  z.iso
    .date({ error: 'Input should be a valid date in the format YYYY-MM-DD' })
    .check(z.refine((d) => !d.startsWith('0000'), { error: 'Input should be a date from year 1 on' }))
// A length that fails stops the checks after it (abort): a name of megabytes costs its length check only.
const text = (max: number) =>
  z.string().check(z.trim(), z.minLength(1, { abort: true }), z.maxLength(max, { abort: true }), holdable())

// Control, format (zero-width, soft hyphen, direction) and private-use characters: none in text a person reads
// (usernames, animals' names and kinds), where they hide or reorder what is shown.
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}]/u
/** Text a person reads (usernames, animals' names and kinds): no control, invisible or direction character. */
function visibleText(max: number) {
  return text(max).check(
    z.refine<string>((u) => !INVISIBLE.test(u.normalize('NFKC')), {
      error: 'Input should not contain control, invisible or direction characters',
    }),
  )
}

const AnimalCreate = once(() =>
  z.object({
    name: visibleText(100),
    age: int(0, 1000),
    kind: visibleText(50),
    fixed: z._default(bool(), false),
    vaccinated: z._default(bool(), false),
  }),
)
const AnimalUpdate = once(() =>
  z.object({
    name: z.optional(visibleText(100)),
    age: z.optional(int(0, 1000)),
    kind: z.optional(visibleText(50)),
    fixed: z.optional(bool()),
    vaccinated: z.optional(bool()),
    adopter_id: z.optional(z.nullable(int(1, Number.MAX_SAFE_INTEGER))),
    adoption_date: z.optional(z.nullable(date())),
  }),
)
const Page = once(() =>
  z.object({
    limit: z._default(int(1, 1000), 100),
    offset: z._default(int(0, Number.MAX_SAFE_INTEGER), 0),
  }),
)
const AnimalList = once(() =>
  z.object({
    sort: z._default(z.enum(store.ANIMAL_SORTS), 'name'),
    intake_after: z.optional(date()),
    intake_before: z.optional(date()),
    ...Page().shape,
  }),
)
// Usernames: taken once whatever their case and Unicode form (db.ts's identityKey), visible, and written in one
// script (db.ts's oneScript).
const username = () =>
  visibleText(64).check(
    z.refine<string>((u) => store.oneScript(u.normalize('NFKC')), {
      error: 'Input should be written in one script, without look-alike letters of another',
    }),
  )

// Passwords: 8 to 256 characters, and none of the most common (refuseCommon, after the schema).
const { min, max } = store.PASSWORD_LENGTH
const newPassword = () =>
  z.string().check(z.minLength(min, { abort: true }), z.maxLength(max, { abort: true }), holdable())
const Registration = once(() =>
  z.object({
    username: username(),
    email: z.email({ error: 'Input should be a valid email address' }).check(z.maxLength(254)),
    password: newPassword(),
  }),
)
const PasswordChange = once(() =>
  z.object({
    current_password: str().check(z.minLength(1), z.maxLength(1024)),
    new_password: newPassword(),
  }),
)
// OAuth2's password grant (RFC 6749 §4.3.2), as FastAPI's OAuth2PasswordRequestForm reads it.
const TokenForm = once(() =>
  z.object({
    grant_type: z.optional(z.literal('password')),
    username: str().check(z.minLength(1), z.maxLength(1024)),
    password: str().check(z.minLength(1), z.maxLength(1024)),
    scope: z.optional(str()),
    client_id: z.optional(str()),
    client_secret: z.optional(str()),
  }),
)

// Response shapes, for /openapi.json only: db.ts builds the values.
const Animal = () =>
  z.object({
    id: z.int(),
    name: z.string(),
    age: z.int(),
    kind: z.string(),
    fixed: z.boolean(),
    vaccinated: z.boolean(),
    intake_date: z.iso.date(),
    adopter_id: z.nullable(z.int()),
    adoption_date: z.nullable(z.iso.date()),
  })
const User = () =>
  z.object({
    id: z.int(),
    username: z.string(),
    email: z.string(),
    created_at: z.string(),
    is_staff: z.boolean(),
  })
const PageMeta = () => z.object({ count: z.int(), limit: z.int(), offset: z.int() })

// /openapi.json, built from the route table and its schemas.

function buildOpenApi(): object {
  const schema = (s: z.ZodMiniType, io: 'input' | 'output') => {
    const { $schema, ...rest } = z.toJSONSchema(s, { io, unrepresentable: 'any' }) as Record<string, unknown>
    return rest
  }
  const paths: Record<string, Record<string, unknown>> = {}
  for (const { route: r, names } of routeTable()) {
    const parameters = [
      ...names.map((name) => ({ name, in: 'path', required: true, schema: { type: 'integer', minimum: 0 } })),
      ...Object.entries(r.query?.().shape ?? {}).map(([name, s]) => ({
        name,
        in: 'query',
        required: !(s as z.ZodMiniType).safeParse(undefined).success,
        schema: schema(s as z.ZodMiniType, 'input'),
      })),
    ]
    const requestBody = r.body
      ? { required: true, content: { 'application/json': { schema: schema(r.body(), 'input') } } }
      : r.form
        ? { required: true, content: { 'application/x-www-form-urlencoded': { schema: schema(r.form(), 'input') } } }
        : undefined
    const success = r.method === 'DELETE' ? '204' : '200'
    paths[r.path] = {
      ...paths[r.path],
      [r.method.toLowerCase()]: {
        summary: r.summary,
        ...(parameters.length ? { parameters } : {}),
        ...(requestBody ? { requestBody } : {}),
        description: `Who may call it: ${ACCESS[r.access]}`,
        'x-access': r.access,
        ...(r.access !== 'anyone' ? { security: [{ bearer: [] }] } : {}),
        responses: {
          [success]: r.response
            ? { description: 'OK', content: { 'application/json': { schema: schema(r.response(), 'output') } } }
            : { description: r.path === '/' ? 'An HTML page' : 'Done' },
          ...(parameters.length || requestBody ? { '422': { description: 'The request failed validation' } } : {}),
          ...(r.access !== 'anyone' ? { '401': { description: 'No valid bearer token' } } : {}),
          ...(r.access === 'staff' || r.access === 'self' || r.path === '/users/me/password'
            ? {
                '403': {
                  description:
                    r.access === 'user' ? 'The current password is wrong' : "The token's user may not call it",
                },
              }
            : {}),
        },
      },
    }
  }
  return {
    openapi: '3.1.0',
    info: { title: 'buddy system API', description: 'API for managing fosters and adoptions.', version: '1.0.0' },
    paths,
    components: {
      securitySchemes: { bearer: { type: 'oauth2', flows: { password: { tokenUrl: '/auth/token', scopes: {} } } } },
    },
  }
}

const HOME_PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>buddy system API</title></head>
<body>
<h1>buddy system API</h1>
<p>API for managing fosters and adoptions.</p>
<p>Docs: <a href="docs">try the API in your browser</a>, or read <a href="openapi.json">the OpenAPI document</a>.</p>
</body>
</html>
`

// Swagger UI from a CDN, as FastAPI serves its docs, so that the package stays small: a pinned version, and
// Subresource Integrity, so that the browser runs those exact files or none. The version is the dev dependency
// swagger-ui-dist's, whose files the browser test serves in the CDN's place (and so checks these hashes).
// https://developer.mozilla.org/en-US/docs/Web/Security/Subresource_Integrity
const SWAGGER_UI = 'https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0'
const SWAGGER_START = "SwaggerUIBundle({ url: 'openapi.json', dom_id: '#swagger-ui' })"
// The pages' Content-Security-Policy: scripts and styles from the pinned CDN only, and the one inline script by its
// SHA-256 (a wrong one stops Swagger UI, which test/docs.test.ts would see in Chromium); JSON fetched from
// here; no page may frame them. https://developer.mozilla.org/en-US/docs/Web/HTTP/Guides/CSP
const HTML_POLICY = [
  "default-src 'none'",
  `script-src ${SWAGGER_UI}/ 'sha256-n0Ne73/TnX+w0lciHH+gamk2SHblD2e0mN0VS/gOeqU='`,
  `style-src ${SWAGGER_UI}/`,
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ')
const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>buddy system API: docs</title>
<link rel="stylesheet" href="${SWAGGER_UI}/swagger-ui.css" integrity="sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I" crossorigin="anonymous">
</head>
<body>
<div id="swagger-ui"></div>
<script src="${SWAGGER_UI}/swagger-ui-bundle.js" integrity="sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9" crossorigin="anonymous"></script>
<script>${SWAGGER_START}</script>
</body>
</html>
`

// The local server: each request becomes a payload-2.0 event for `handler`, as a function URL sends it.

export function toEvent(req: IncomingMessage, body: Buffer): APIGatewayProxyEventV2 {
  // The path as sent, not normalized, as a function URL's rawPath is.
  const target = req.url ?? '/'
  const q = target.indexOf('?')
  const path = q < 0 ? target : target.slice(0, q)
  const headers: Record<string, string> = {}
  for (const name in req.headers) {
    const value = req.headers[name]
    if (value !== undefined && name !== 'cookie') headers[name] = Array.isArray(value) ? value.join(',') : value
  }
  const now = Date.now()
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: q < 0 ? '' : target.slice(q + 1),
    cookies: req.headers.cookie?.split(/;\s*/),
    headers,
    requestContext: {
      accountId: 'local',
      apiId: 'local',
      domainName: req.headers.host ?? 'localhost',
      domainPrefix: 'local',
      http: {
        method: req.method ?? 'GET',
        path,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: req.socket.remoteAddress ?? '',
        userAgent: req.headers['user-agent'] ?? '',
      },
      requestId: crypto.randomUUID(), // as Lambda's request IDs are
      routeKey: '$default',
      stage: '$default',
      time: requestTime(now),
      timeEpoch: now,
    },
    body: body.length ? body.toString('base64') : undefined,
    isBase64Encoded: body.length > 0,
  }
}

// requestContext.time as function URLs write it: "12/Mar/2020:19:03:58 +0000".
function requestTime(ms: number): string {
  const [, day, month, year, time] = new Date(ms).toUTCString().split(' ') // "Thu, 12 Mar 2020 19:03:58 GMT"
  return `${day}/${month}/${year}:${time} +0000`
}

const NO_BODY = Buffer.alloc(0)
const hasBody = (req: IncomingMessage) =>
  Boolean(req.headers['transfer-encoding'] || Number(req.headers['content-length']))

/** The body, or undefined past MAX_BODY; rejects when the client goes away in the middle of it ('aborted'). */
async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += chunk.length
    if (size > MAX_BODY) return undefined
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

async function serve() {
  const port = Number(process.env.PORT || 8000)
  const host = process.env.HOST || '127.0.0.1'
  // The schema first (as the seeder does at each deploy), the common passwords, and on a new local database the
  // sample data.
  const {
    commonPasswordList,
    describeCommonPasswords,
    describeSchema,
    loadCommonPasswords,
    seed,
    summarize,
    SAMPLE_PASSWORD,
    SAMPLE_STAFF,
  } = await import('./seed.ts')
  const config = store.configFromEnv()
  const setup = await store.openDatabase(config)
  try {
    const schema = await store.migrate(setup)
    if (schema.applied.length) console.log(`${describeSchema(schema)}.`)
    const common = await loadCommonPasswords(setup, await commonPasswordList())
    if (common.added || common.removed) console.log(`${describeCommonPasswords(common)}.`)
    if (config.kind === 'sqlite' && !config.onNetworkFs) {
      // A person's own machine: the sample's users get SAMPLE_PASSWORD, and SAMPLE_STAFF is staff (seed.ts).
      const result = await seed(setup, 'local')
      if (result.sample === 'loaded') {
        console.log(`The database is empty: loading the sample data. ${summarize(result)}`)
        console.log(`Log in as ${SAMPLE_STAFF} (staff) or any sample user with the password "${SAMPLE_PASSWORD}".`)
      }
    }
  } finally {
    await setup.close()
  }
  const db = await store.database()

  // Imported here, for the local server alone: at the top it would add ~50 ms to every cold start on Lambda (its
  // WebSocket export loads all of undici), where this never runs.
  const { createServer } = await import('node:http')
  const server = createServer(async (req, res) => {
    const started = performance.now()
    let body: Buffer | undefined
    try {
      body = hasBody(req) ? await readBody(req) : NO_BODY
    } catch {
      // The client left in the middle of its body: nobody to answer, nothing to do.
      return void req.socket.destroy()
    }
    if (!body) {
      // Past MAX_BODY: the 413 the handler gives on Lambda, with its headers; the rest of the body is not read.
      const result = toResult(failure({ method: req.method ?? '?', path: req.url ?? '/' }, tooLarge()), {})
      res.writeHead(413, {
        ...(result.headers as Record<string, string>),
        'content-length': Buffer.byteLength(result.body ?? ''),
        connection: 'close',
      })
      res.end(result.body)
      return
    }
    const event = toEvent(req, body)
    const result = await handler(event)
    const headers: Record<string, string | number> = { ...(result.headers as Record<string, string>) }
    if (req.method !== 'HEAD') headers['content-length'] = Buffer.byteLength(result.body ?? '')
    res.writeHead(result.statusCode, headers)
    res.end(result.body)
    console.log(`${req.method} ${event.rawPath} ${result.statusCode} ${(performance.now() - started).toFixed(1)}ms`)
  })
  server.on('error', async (error) => {
    console.error(`Cannot serve on ${host}:${port}: ${error.message}`)
    await store.closeDatabase()
    process.exit(1)
  })
  server.listen(port, host, () => {
    const { port: actual } = server.address() as { port: number }
    console.log(`buddy system API on http://${host}:${actual} (${db.label}). Ctrl-C stops it.`)
  })
  const stop = () => {
    server.close()
    server.closeAllConnections()
    void store.closeDatabase().then(() => process.exit(0))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

// Run as a command (`tsx api.ts`, `node build/api.mjs`), not imported by Lambda or a test.
const script = process.argv[1] ?? ''
if (/api\.[mc]?[jt]s$/.test(script) && import.meta.url === pathToFileURL(script).href) {
  await serve().catch(async (error) => {
    console.error(`Cannot start: ${error.message}`)
    await store.closeDatabase()
    process.exit(1)
  })
}
