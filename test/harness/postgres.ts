/**
 * Throwaway PostgreSQL clusters for tests (see src/dev/cluster.ts, shared with
 * the dev default and the benchmarks). Tests never touch a PostgreSQL that
 * happens to be running on the machine.
 */
export {
  startPostgresCluster as startPostgres,
  findPgBinDir,
  type PostgresCluster as PgCluster,
  type StartPostgresOptions,
} from '../../src/dev/cluster.js'
