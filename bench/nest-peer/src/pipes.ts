import { BadRequestException, Injectable, PipeTransform } from '@nestjs/common';

const MAX_ID = 2 ** 31 - 1;
const MAX_PAGE = 100_000;
const MAX_LIMIT = 100;
const STATUSES = ['pending', 'enriched', 'failed'];

/** A record id: decimal digits only, within a PostgreSQL integer. */
@Injectable()
export class IdPipe implements PipeTransform<string, number> {
  transform(raw: string): number {
    const id = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!(id <= MAX_ID)) {
      throw new BadRequestException(`id must be a positive integer (got ${JSON.stringify(raw)})`);
    }
    return id;
  }
}

export interface ListQuery {
  city?: string;
  industry?: string;
  enrichment_status?: string;
  page: number;
  limit: number;
}

/** The list's filters and page. Unknown parameters are ignored; an empty filter filters nothing. */
@Injectable()
export class ListQueryPipe implements PipeTransform<Record<string, unknown>, ListQuery> {
  transform(query: Record<string, unknown>): ListQuery {
    const one = (key: string): string | undefined => {
      const value = query[key];
      if (Array.isArray(value)) throw new BadRequestException(`${key} must be given at most once`);
      return value === undefined ? undefined : String(value);
    };
    const text = (key: string): string | undefined => {
      const value = one(key);
      if (value?.includes('\0')) {
        throw new BadRequestException(`${key} must not contain the NUL character (\\u0000)`);
      }
      return value || undefined;
    };
    const integer = (key: string, max: number, fallback: number): number => {
      const value = one(key);
      if (value === undefined) return fallback;
      const n = /^\d+$/.test(value) ? Number(value) : NaN;
      if (!(n >= 1 && n <= max)) throw new BadRequestException(`${key} must be an integer from 1 to ${max}`);
      return n;
    };

    const status = text('enrichment_status');
    if (status !== undefined && !STATUSES.includes(status)) {
      throw new BadRequestException(`enrichment_status must be one of ${STATUSES.join(', ')}`);
    }
    return {
      city: text('city'),
      industry: text('industry'),
      enrichment_status: status,
      page: integer('page', MAX_PAGE, 1),
      limit: integer('limit', MAX_LIMIT, 20),
    };
  }
}
