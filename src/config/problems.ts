/**
 * Collecting config problems instead of stopping at the first, so an
 * operator fixes a file in one pass. Parts of the config that do not depend
 * on each other (top-level sections, list entries, unknown keys of one
 * mapping) each run under `part`; their ConfigErrors are kept and thrown
 * together at the end.
 */
import { ConfigError } from './errors.js'

/** Several problems in one config; its message has one `config: <key>: <problem>` line each. */
export class ConfigErrors extends ConfigError {
  readonly problems: readonly ConfigError[]

  constructor(problems: readonly ConfigError[]) {
    super(problems[0]!.key, problems[0]!.problem)
    this.name = 'ConfigErrors'
    this.problems = problems
    this.message = problems.map((p) => p.message).join('\n')
  }
}

export class ConfigProblems {
  private readonly found: ConfigError[] = []

  /** Runs one independent part; a ConfigError is kept (undefined stands for the part's value), anything else is rethrown. */
  part<T>(fn: () => T): T | undefined {
    try {
      return fn()
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      this.add(err)
      return undefined
    }
  }

  add(err: ConfigError): void {
    for (const p of err instanceof ConfigErrors ? err.problems : [err]) {
      if (!this.found.some((f) => f.message === p.message)) this.found.push(p)
    }
  }

  get empty(): boolean {
    return this.found.length === 0
  }

  /** Throws what was found: the one problem as it is, several as ConfigErrors. */
  throwIfAny(): void {
    if (this.found.length === 1) throw this.found[0]!
    if (this.found.length > 1) throw new ConfigErrors(this.found)
  }
}

/** Maps each item of a list, collecting every item's problems; throws them all after the last item. */
export function mapEach<T, U>(items: readonly T[], fn: (item: T, index: number) => U): U[] {
  const problems = new ConfigProblems()
  const out: U[] = []
  items.forEach((item, i) => {
    const v = problems.part(() => fn(item, i))
    if (v !== undefined) out.push(v)
  })
  problems.throwIfAny()
  return out
}
