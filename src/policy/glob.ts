const cache = new Map<string, RegExp>()

/** Glob → anchored RegExp: `*` any run of characters (including `/`), `?` one character. */
export function globToRegExp(glob: string): RegExp {
  let re = cache.get(glob)
  if (!re) {
    const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')
    re = new RegExp('^' + body + '$', 's')
    cache.set(glob, re)
  }
  return re
}

export function globMatches(glob: string, value: string): boolean {
  return globToRegExp(glob).test(value)
}
