// `tsx api.ts`: the local server, driven over real HTTP on 127.0.0.1.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { root, run } from './cli.ts'
import { accessMatrix, type Send } from './access.ts'

const dir = mkdtempSync(join(tmpdir(), 'buddy-server-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const env = (name: string) => ({
  DB_LOCATION: undefined,
  DB_PATH: join(dir, name),
  PORT: '0',
  HOST: '127.0.0.1',
  JWT_KEY: undefined,
})

async function start(name: string) {
  const server = run('api.ts', env(name))
  const [, url] = await server.waitFor(/API on (http:\/\/\S+)/)
  return { ...server, url }
}

async function stop(server: Awaited<ReturnType<typeof start>>) {
  server.child.kill('SIGINT')
  return server.exited
}

describe('the local server', () => {
  it('turns each request into the payload-2.0 event that a function URL would send', async () => {
    process.env.JWT_KEY ??= '0123456789abcdef'.repeat(4) // read by api.ts when it loads
    const { toEvent } = await import('../api.ts')
    const server = createServer(async (req, res) => {
      const chunks: Buffer[] = []
      for await (const chunk of req) chunks.push(chunk)
      res.end(JSON.stringify(toEvent(req, Buffer.concat(chunks))))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const { port } = server.address() as AddressInfo
      const sent = Date.now()
      const answer = await fetch(`http://127.0.0.1:${port}/animals/5/?a=1&a=2&b=%20`, {
        method: 'PUT',
        headers: { cookie: 'x=1; y=2', 'X-Custom': 'v' },
        body: '{"age": 3}',
      })
      const event = await answer.json()
      const received = Date.now()
      assert.equal(event.version, '2.0')
      assert.equal(event.rawPath, '/animals/5/')
      assert.equal(event.rawQueryString, 'a=1&a=2&b=%20')
      assert.deepEqual(event.cookies, ['x=1', 'y=2'])
      assert.equal(event.headers['x-custom'], 'v')
      assert.equal(event.headers.cookie, undefined)
      assert.deepEqual(event.requestContext.http, {
        method: 'PUT',
        path: '/animals/5/',
        protocol: 'HTTP/1.1',
        sourceIp: '127.0.0.1',
        userAgent: event.headers['user-agent'],
      })
      assert.deepEqual([event.body, event.isBase64Encoded], [Buffer.from('{"age": 3}').toString('base64'), true])
      const { time, timeEpoch } = event.requestContext
      assert.ok(timeEpoch >= sent && timeEpoch <= received, `${timeEpoch} between ${sent} and ${received}`)
      const [, day, month, year, clock] =
        /^(\d{2})\/([A-Z][a-z]{2})\/(\d{4}):(\d{2}:\d{2}:\d{2}) \+0000$/.exec(time) ?? []
      assert.equal(Date.parse(`${day} ${month} ${year} ${clock} GMT`), Math.floor(timeEpoch / 1000) * 1000, time)
      // Each request its own ID, a UUID as Lambda's are.
      const next = await fetch(`http://127.0.0.1:${port}/`).then((r) => r.json())
      const ids = [event.requestContext.requestId, next.requestContext.requestId]
      for (const id of ids) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      assert.notEqual(ids[0], ids[1])
    } finally {
      server.close()
    }
  })

  it("says cold: true in the request line of a Lambda container's first request, and only there", async () => {
    const script = join(dir, 'cold.mts')
    writeFileSync(
      script,
      `import { handler } from ${JSON.stringify(join(root, 'api.ts'))}
      const lines: unknown[] = []
      console.log = (line: unknown) => lines.push(line)
      const http = { method: 'GET', path: '/greet', sourceIp: '198.51.100.7' }
      const event = { version: '2.0', rawPath: '/greet', rawQueryString: '', headers: {}, requestContext: { http } }
      await handler(event as any)
      await handler(event as any)
      process.stdout.write(JSON.stringify(lines))`,
    )
    const jwt = '0123456789abcdef'.repeat(4)
    const child = run(script, { ...env('cold.db'), AWS_LAMBDA_FUNCTION_NAME: 'buddy-system', JWT_KEY: jwt })
    assert.equal(await child.exited, 0, child.output())
    const lines = JSON.parse(child.stdout())
    assert.deepEqual(
      lines.map(({ ms, ...line }: { ms: number }) => (assert.equal(typeof ms, 'number'), line)),
      [true, false].map((cold) => ({ method: 'GET', route: '/greet', status: 200, cold, source: '198.51.100.7' })),
    )
  })

  it('drops a request whose client leaves in the middle of its body, and goes on serving', async () => {
    const server = await start('left.db')
    try {
      const { port } = new URL(server.url)
      for (let i = 0; i < 5; i++) {
        await new Promise<void>((resolve, reject) => {
          const socket = connect(Number(port), '127.0.0.1', () => {
            socket.write(
              `POST /animals HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"name": "re`,
            )
            setTimeout(() => {
              socket.destroy()
              resolve()
            }, 50)
          })
          socket.on('error', reject)
        })
      }
      await new Promise((resolve) => setTimeout(resolve, 200))
      assert.equal(server.child.exitCode, null, `the server is still up:\n${server.output()}`)
      const greet = await fetch(`${server.url}/greet`)
      assert.equal(greet.status, 200)
      assert.doesNotMatch(server.output(), /aborted|ECONNRESET|Unhandled/i)
    } finally {
      await stop(server)
    }
  })

  it('loads the sample data into an empty database, serves the API over HTTP and logs each request', async () => {
    const server = await start('first.db')
    try {
      assert.match(server.output(), /JWT_KEY is not set/)
      assert.match(server.output(), /The database is empty: loading the sample data\. added 8 users, 16 animals/)
      const list = await fetch(`${server.url}/animals?sort=age&limit=2`)
      assert.equal(list.status, 200)
      assert.match(list.headers.get('content-type')!, /^application\/json/)
      const text = await list.text()
      assert.equal(Number(list.headers.get('content-length')), Buffer.byteLength(text), 'a sized body, not chunks')
      const body = JSON.parse(text)
      assert.deepEqual(body.meta, { count: 16, limit: 2, offset: 0 })

      const token = await fetch(`${server.url}/auth/token`, {
        method: 'POST',
        body: new URLSearchParams({ username: 'juniper', password: 'password' }),
      }).then((r) => r.json())
      const created = await fetch(`${server.url}/animals`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token.access_token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'rex', age: '3', kind: 'dog' }),
      })
      assert.equal(created.status, 200)
      assert.equal((await created.json()).animal.id, 17)

      const preflight = await fetch(`${server.url}/animals`, {
        method: 'OPTIONS',
        headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST' },
      })
      assert.equal(preflight.status, 204)
      assert.equal(preflight.headers.get('access-control-allow-origin'), 'http://localhost:5173')

      const patch = await fetch(`${server.url}/animals/1`, { method: 'PATCH' })
      assert.deepEqual([patch.status, patch.headers.get('allow')], [405, 'GET, PUT, DELETE, HEAD'])

      const huge = await fetch(`${server.url}/animals`, { method: 'POST', body: 'x'.repeat(2 * 1024 * 1024) }).catch(
        (e) => e,
      )
      assert.equal(huge.status, 413, String(huge))

      await server.waitFor(/PATCH \/animals\/1 405 \d+\.\dms/)
      assert.match(server.output(), /GET \/animals 200 \d+\.\dms/)
      assert.match(server.output(), /POST \/auth\/token 200 \d+\.\dms/)
    } finally {
      assert.equal(await stop(server), 0, 'Ctrl-C stops it cleanly')
    }
  })

  it(
    'answers requests that arrive together each with its own answer, in order, whatever the other clients do',
    { timeout: 30_000 },
    async () => {
      const server = await start('together.db')
      /** Writes `text` at once on a new connection, then ends it, destroys it or waits for the server to close it;
       * resolves with all it received. */
      const raw = (text: string, then: 'end' | 'destroy' | 'wait') =>
        new Promise<string>((resolve, reject) => {
          const { port } = new URL(server.url)
          const socket = connect(Number(port), '127.0.0.1', () => {
            socket.write(text)
            if (then === 'end') socket.end()
            if (then === 'destroy') socket.destroy()
          })
          let received = ''
          socket.on('data', (chunk) => (received += chunk))
          socket.on('error', reject)
          socket.on('close', () => resolve(received))
        })
      const get = (id: number, close = false) =>
        `GET /animals/${id} HTTP/1.1\r\nHost: x\r\n${close ? 'Connection: close\r\n' : ''}\r\n`
      try {
        const ids = [3, 1, 16, 999, 7, 2, 2, 12, 5, 9]
        const [pipelined, halfClosed, , ...fetched] = await Promise.all([
          // Ten requests in one write: the server reads them in one turn of its event loop.
          raw(ids.map((id, i) => get(id, i === ids.length - 1)).join(''), 'wait'),
          raw(get(4), 'end'), // a client that stops sending before its answer comes
          raw(get(6).repeat(5), 'destroy'), // one that leaves before its answers
          ...ids.map((id) => fetch(`${server.url}/animals/${id}`).then(async (r) => [r.status, await r.json()])),
        ])
        const expected = ids.map((id) => (id === 999 ? [404, 'Animal'] : [200, id]))
        const answers = pipelined.split(/(?=HTTP\/1\.1 )/).map((answer) => {
          const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))
          return [Number(answer.slice(9, 12)), body.animal?.id ?? body.detail.entity_name]
        })
        assert.deepEqual(answers, expected)
        assert.deepEqual(
          fetched.map(([status, body]) => [status, body.animal?.id ?? body.detail.entity_name]),
          expected,
        )
        assert.match(halfClosed, /^HTTP\/1\.1 200 OK\r\n[^]*"id":4,/)
        // The server is still up, and still answers.
        assert.equal((await fetch(`${server.url}/animals/8`).then((r) => r.json())).animal.id, 8)
      } finally {
        assert.equal(await stop(server), 0)
      }
    },
  )

  it("keeps the first version's React client working on the local sample: register, log in, list, and add an animal as juniper", async () => {
    const server = await start('react.db')
    const origin = { origin: 'http://localhost:5173' } // the client's development server, allowed by default
    const logIn = async (username: string, password: string) => {
      const answer = await fetch(`${server.url}/auth/token`, {
        method: 'POST',
        headers: origin,
        body: new URLSearchParams({ username, password }),
      })
      assert.equal(answer.status, 200, username)
      return (await answer.json()).access_token as string
    }
    try {
      assert.match(server.output(), /Log in as juniper \(staff\) or any sample user with the password "password"/)
      const registered = await fetch(`${server.url}/auth/registration`, {
        method: 'POST',
        headers: { ...origin, 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'newcomer', email: 'newcomer@example.com', password: 'kestrel harbour' }),
      })
      assert.equal(registered.status, 200)
      assert.equal(registered.headers.get('access-control-allow-origin'), origin.origin)
      const newcomer = await logIn('newcomer', 'kestrel harbour')
      const list = await fetch(`${server.url}/animals`, { headers: origin }).then((r) => r.json())
      assert.equal(list.meta.count, 16)
      const add = (token: string) =>
        fetch(`${server.url}/animals`, {
          method: 'POST',
          headers: { ...origin, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'rex', age: '3', kind: 'dog', fixed: 'true' }), // as its form sends them
        })
      assert.equal((await add(newcomer)).status, 403, 'a public user may not')
      const added = await add(await logIn('juniper', 'password'))
      assert.equal(added.status, 200)
      assert.equal((await added.json()).animal.name, 'rex')
    } finally {
      await stop(server)
    }
  })

  it("answers every route over HTTP as API.md's Access table says", { timeout: 60_000 }, async () => {
    const server = await start('access.db')
    try {
      const send: Send = async ({ method = 'GET', path, headers, body }) => {
        const answer = await fetch(`${server.url}${path}`, { method, headers, body })
        return { status: answer.status, text: await answer.text() }
      }
      const login = async (username: string, password: string) => {
        const { text } = await send({
          method: 'POST',
          path: '/auth/token',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ username, password }).toString(),
        })
        return JSON.parse(text).access_token as string
      }
      const lines = await accessMatrix(send, login)
      assert.deepEqual(
        lines.filter((line) => line.includes('should be')),
        [],
        lines.join('\n'),
      )
      assert.equal(lines.length, 58)
    } finally {
      await stop(server)
    }
  })

  it(
    'holds failed logins across two servers on one SQLite file, as across Lambda containers',
    { timeout: 60_000 },
    async () => {
      const [first, second] = [await start('shared.db'), await start('shared.db')]
      const login = (server: typeof first, password: string) =>
        fetch(`${server.url}/auth/token`, {
          method: 'POST',
          body: new URLSearchParams({ username: 'reggie', password }),
        })
      try {
        for (let i = 0; i < 5; i++) assert.equal((await login(i % 2 ? second : first, `wrong-${i}`)).status, 401)
        for (const server of [first, second]) {
          const held = await login(server, 'password')
          assert.equal(held.status, 429, 'the right password, during the wait, on either server')
          assert.ok(Number(held.headers.get('retry-after')) > 0)
        }
        await first.waitFor(/what: 'failed login', username: 'reggie', source: '127\.0\.0\.1'/)
      } finally {
        await stop(first)
        await stop(second)
      }
    },
  )

  it('refuses a body over 64 KB with 413, answers HEAD as GET without a body, and sends the safe headers', async () => {
    const server = await start('limits.db')
    try {
      const big = await fetch(`${server.url}/auth/registration`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'x'.repeat(65 * 1024) }),
      })
      assert.deepEqual([big.status, await big.json()], [413, { detail: 'request body too large' }])
      assert.equal(big.headers.get('x-content-type-options'), 'nosniff')
      const head = await fetch(`${server.url}/docs`, { method: 'HEAD' }) // curl -I
      assert.deepEqual(
        [head.status, head.headers.get('content-type'), await head.text()],
        [200, 'text/html; charset=utf-8', ''],
      )
      assert.match(head.headers.get('content-security-policy')!, /frame-ancestors 'none'/)
      for (const header of ['x-frame-options', 'referrer-policy']) assert.ok(head.headers.get(header), header)
      assert.equal(head.headers.get('strict-transport-security'), null, 'no HSTS over plain HTTP')
    } finally {
      await stop(server)
    }
  })

  it('refuses to start with a JWT_KEY that is obviously weak', async () => {
    for (const key of ['a'.repeat(64), 'ab'.repeat(32), 'password'.repeat(5)]) {
      const server = run('api.ts', { ...env('weak.db'), JWT_KEY: key })
      assert.equal(await server.exited, 1)
      assert.match(
        server.output(),
        /JWT_KEY is too weak \(too few distinct characters\): generate one with `openssl rand -hex 32`/,
      )
    }
  })

  it('does not load the sample data again into a database that has data', async () => {
    const first = await start('again.db')
    await stop(first)
    const second = await start('again.db')
    try {
      assert.doesNotMatch(second.output(), /loading the sample data/)
      const body = await fetch(`${second.url}/animals`).then((r) => r.json())
      assert.equal(body.meta.count, 16)
    } finally {
      await stop(second)
    }
    // Log lines are written in batches; Ctrl-C right after a request still writes its line.
    assert.match(second.stdout(), /GET \/animals 200 \d+\.\dms/)
  })

  it('refuses to start on an unknown DB_LOCATION, naming it and the allowed ones', async () => {
    const server = run('api.ts', { ...env('x.db'), DB_LOCATION: 'floppy' })
    assert.equal(await server.exited, 1)
    assert.match(server.output(), /DB_LOCATION=floppy is not a database location; use one of: local, efs, rds/)
  })

  it('says so when the port is taken', async () => {
    const server = await start('port.db')
    try {
      const port = new URL(server.url).port
      const second = run('api.ts', { ...env('port2.db'), PORT: port })
      assert.equal(await second.exited, 1)
      assert.match(second.output(), new RegExp(`Cannot serve on 127.0.0.1:${port}: .*EADDRINUSE`))
    } finally {
      await stop(server)
    }
  })
})
