// Runs this project's commands (`tsx api.ts`, `tsx seed.ts`) with the Node that runs the tests.
import { spawn, type ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

export const root = fileURLToPath(new URL('..', import.meta.url))
const tsx = createRequire(import.meta.url).resolve('tsx/cli')

export interface Running {
  child: ChildProcess
  output: () => string
  /** Standard output alone. */
  stdout: () => string
  /** Resolves with the first match of `pattern` in the output, or rejects after `ms`. */
  waitFor(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>
  exited: Promise<number | null>
  /** With `group`: sends the signal to the whole process group, tsx and the Node it starts. */
  killGroup(signal: NodeJS.Signals): void
}

/** Runs `tsx file args`; with `group`, in a process group of its own, for killGroup. */
export function run(
  file: string,
  env: Record<string, string | undefined>,
  args: string[] = [],
  cwd = root,
  group = false,
): Running {
  const child = spawn(process.execPath, [tsx, file, ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: group,
  })
  let output = ''
  let stdout = ''
  const waiters = new Set<() => void>()
  const collect = (chunk: Buffer) => {
    output += chunk
    for (const check of waiters) check()
  }
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk
    collect(chunk)
  })
  child.stderr!.on('data', collect)
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      for (const check of waiters) check()
      resolve(code)
    }),
  )
  return {
    child,
    output: () => output,
    stdout: () => stdout,
    exited,
    killGroup(signal) {
      if (!group) throw new Error('killGroup needs run(…, group = true)')
      try {
        process.kill(-child.pid!, signal)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error // already gone
      }
    },
    waitFor(pattern, ms = 20_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`no ${pattern} within ${ms} ms in:\n${output}`)), ms)
        const check = () => {
          const match = output.match(pattern)
          if (match) done(undefined, match)
          else if (child.exitCode !== null) done(new Error(`exited ${child.exitCode} before ${pattern}:\n${output}`))
        }
        const done = (error?: Error, match?: RegExpMatchArray) => {
          clearTimeout(timer)
          waiters.delete(check)
          error ? reject(error) : resolve(match!)
        }
        waiters.add(check)
        check()
      })
    },
  }
}
