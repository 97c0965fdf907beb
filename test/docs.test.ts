// GET /docs in a real browser: headless Chromium, driven by playwright-core, against the local server over
// HTTP. The page loads Swagger UI from a CDN; the browser's requests for it are answered with the same files
// from the dev dependency swagger-ui-dist, so their Subresource Integrity hashes are checked for real.
// With CI=true a missing Chromium is a failure.
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, describe, it } from 'node:test'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { chromium } from 'playwright-core'
import { run } from './cli.ts'

const CHROMIUM = '/usr/bin/chromium'
if (!existsSync(CHROMIUM) && process.env.CI === 'true')
  throw new Error(`CI=true and no ${CHROMIUM} (apt-get install chromium)`)
const dist = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'))
const sample = JSON.parse(readFileSync(new URL('../fake_db.json', import.meta.url), 'utf8'))

describe('the docs page in Chromium', { skip: existsSync(CHROMIUM) ? false : `no ${CHROMIUM}` }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'buddy-docs-'))
  after(() => rmSync(dir, { recursive: true, force: true }))

  /** The local server on a new SQLite file, and its URL. */
  const serve = async (file: string) => {
    const server = run('api.ts', {
      DB_LOCATION: undefined,
      DB_PATH: join(dir, file),
      PORT: '0',
      HOST: '127.0.0.1',
      JWT_KEY: undefined,
    })
    const [, url] = await server.waitFor(/API on (http:\/\/\S+)/)
    return { server, url }
  }

  it('lists every route, and "Try it out" on GET /animals shows the sample animals', { timeout: 90_000 }, async () => {
    const { server, url } = await serve('docs.db')
    // The flags this machine's Chromium needs as root and without a network (see the env notes).
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    })
    try {
      const page = await browser.newPage()
      const errors: string[] = []
      page.on('console', (message) => message.type() === 'error' && errors.push(message.text()))
      const served: string[] = []
      await page.route('**/*', async (route) => {
        const target = new URL(route.request().url())
        if (target.origin === url) return route.continue()
        const cdn = /^\/npm\/swagger-ui-dist@([\d.]+)\/([\w.-]+)$/.exec(target.pathname)
        if (target.host !== 'cdn.jsdelivr.net' || !cdn) return route.abort()
        const version = JSON.parse(readFileSync(join(dist, 'package.json'), 'utf8')).version
        assert.equal(cdn[1], version, 'the page pins the version installed as swagger-ui-dist')
        served.push(cdn[2])
        await route.fulfill({
          body: readFileSync(join(dist, cdn[2])),
          contentType: cdn[2].endsWith('.css') ? 'text/css' : 'application/javascript',
          headers: { 'access-control-allow-origin': '*' }, // as the CDN answers: crossorigin="anonymous" needs it
        })
      })

      const docs = await page.goto(`${url}/docs`)
      assert.match(docs!.headers()['content-security-policy'], /script-src/, 'under its Content-Security-Policy')
      await page.waitForSelector('.opblock', { timeout: 30_000 })
      assert.deepEqual(served.sort(), ['swagger-ui-bundle.js', 'swagger-ui.css'])
      const listed = await page.$$eval('.opblock', (blocks) =>
        blocks.map(
          (b) =>
            `${b.querySelector('.opblock-summary-method')?.textContent} ${b.querySelector('.opblock-summary-path')?.getAttribute('data-path')}`,
        ),
      )
      const document = await (await fetch(`${url}/openapi.json`)).json()
      const routes = Object.entries(document.paths).flatMap(([path, ops]) =>
        Object.keys(ops as object).map((m) => `${m.toUpperCase()} ${path}`),
      )
      assert.deepEqual(listed.sort(), routes.sort())

      const animals = page.locator('.opblock-get', { has: page.locator('[data-path="/animals"]') })
      await animals.locator('.opblock-summary').first().click()
      await animals.getByRole('button', { name: 'Try it out' }).click()
      await animals.getByRole('button', { name: 'Execute' }).click()
      const body = animals.locator('.live-responses-table .response-col_description pre').first()
      await body.waitFor({ timeout: 15_000 })
      const answer = JSON.parse(await body.innerText())
      const names = Object.values(sample.animals as Record<string, { name: string }>).map((a) => a.name)
      assert.equal(answer.meta.count, names.length)
      assert.deepEqual(answer.animals.map((a: { name: string }) => a.name).sort(), [...names].sort())
      assert.deepEqual(
        errors.filter((e) => /integrity|Refused|Failed to load|Content Security Policy/i.test(e)),
        [],
      )
    } finally {
      await browser.close()
      server.child.kill('SIGINT')
      await server.exited
    }
  })

  it('cannot be framed by a page on another origin, nor can the home page', { timeout: 60_000 }, async () => {
    const { server, url } = await serve('frame.db')
    // Another origin: another port on 127.0.0.1, serving a page that frames ours.
    const other = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end(`<iframe id="docs" src="${url}/docs"></iframe><iframe id="home" src="${url}/"></iframe>`)
    })
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve))
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    })
    try {
      const page = await browser.newPage()
      await page.route('https://cdn.jsdelivr.net/**', (route) => route.abort())
      const refused: string[] = []
      page.on('console', (message) => message.type() === 'error' && refused.push(message.text()))
      const loaded = new Map<string, number>()
      page.on('response', (response) => loaded.set(new URL(response.url()).pathname, response.status()))
      await page.goto(`http://127.0.0.1:${(other.address() as AddressInfo).port}/`)
      await page.waitForTimeout(1000)
      assert.deepEqual(
        [loaded.get('/docs'), loaded.get('/')],
        [200, 200],
        'both answered, and the browser refused to show them',
      )
      for (const id of ['docs', 'home']) {
        const frame = await (await page.$(`#${id}`))!.contentFrame()
        const title = await frame!.evaluate(() => document.title).catch(() => '')
        assert.doesNotMatch(title, /buddy system/, `${id}: the page is not shown in the frame`)
      }
      assert.ok(
        refused.some((e) => /frame-ancestors|X-Frame-Options|Refused to display/i.test(e)),
        refused.join('\n'),
      )
    } finally {
      await browser.close()
      other.close()
      server.child.kill('SIGINT')
      await server.exited
    }
  })
})
