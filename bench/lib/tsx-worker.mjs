// A worker thread that runs a TypeScript module under tsx (a Worker started
// from a .ts file does not inherit tsx's loader): workerData.entry is the
// module's URL; the rest of workerData is the module's.
import { register } from 'tsx/esm/api'
import { workerData } from 'node:worker_threads'

register()
await import(workerData.entry)
