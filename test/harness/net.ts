export { freePort } from '../../src/dev/cluster.js'
