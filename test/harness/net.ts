import net from 'node:net'

/**
 * Find a currently free TCP port on 127.0.0.1 by binding port 0 and closing
 * the listener again. There is an inherent race (another process may take the
 * port before the caller binds it); callers that start servers should retry on
 * EADDRINUSE.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen({ port: 0, host, exclusive: true }, () => {
      const addr = srv.address()
      if (addr === null || typeof addr === 'string') {
        srv.close()
        reject(new Error('freePort: unexpected server address ' + String(addr)))
        return
      }
      const { port } = addr
      srv.close((err) => (err ? reject(err) : resolve(port)))
    })
  })
}
