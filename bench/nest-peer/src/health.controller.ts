import { CACHE_MANAGER, Cache } from '@nestjs/cache-manager';
import { Controller, Get, HttpException, HttpStatus, Inject } from '@nestjs/common';
import { Database } from './database';

@Controller('health')
export class HealthController {
  constructor(
    private readonly db: Database,
    @Inject(CACHE_MANAGER) private readonly cache: Cache,
  ) {}

  @Get()
  async health() {
    const store = this.cache.stores[0]?.store as { client?: { isReady?: boolean } } | undefined;
    const redis = store?.client?.isReady ? 'up' : 'down';
    try {
      await this.db.query('SELECT 1');
    } catch {
      throw new HttpException({ status: 'error', redis, database: 'down' }, HttpStatus.SERVICE_UNAVAILABLE);
    }
    return { status: 'ok', redis, database: 'up' };
  }
}
