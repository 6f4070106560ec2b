import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { Pool, QueryResultRow, types } from 'pg';
import { config } from './config';

// The schema's TIMESTAMP(3) columns hold UTC without a zone: read them as UTC.
types.setTypeParser(types.builtins.TIMESTAMP, (text) => new Date(`${text.replace(' ', 'T')}Z`));

@Injectable()
export class Database implements OnModuleDestroy {
  private readonly pool = new Pool({ connectionString: config.databaseUrl });

  constructor() {
    this.pool.on('error', (err) => console.error(`postgres: ${err.message}`));
  }

  async query<T extends QueryResultRow = QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await this.pool.query<T>(sql, params)).rows;
  }

  onModuleDestroy(): Promise<void> {
    return this.pool.end();
  }
}
