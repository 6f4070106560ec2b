function seconds(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback);
  return Number.isFinite(value) && value > 0 ? value : fallback;
}

export const config = {
  host: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT ?? 3000),
  databaseUrl: process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/letip',
  redisUrl: process.env.REDIS_URL || 'redis://127.0.0.1:6379',
  keyPrefix: process.env.KEY_PREFIX ?? 'nestpeer:',
  workers: Math.max(1, Math.floor(Number(process.env.WORKERS ?? 1)) || 1),
};

/** Time to live of each cache family, in milliseconds (cache-manager's unit). */
export const ttl = {
  stats: seconds('CACHE_TTL_STATS_SECS', 30) * 1000,
  list: seconds('CACHE_TTL_LIST_SECS', 300) * 1000,
  detail: seconds('CACHE_TTL_DETAIL_SECS', 600) * 1000,
};
