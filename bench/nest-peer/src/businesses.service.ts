import { Injectable, NotFoundException } from '@nestjs/common';
import { Database } from './database';
import { ListQuery } from './pipes';

const BUSINESS = `id, name, address, city, state, zip, phone, website, business_type, industry,
  employee_count, year_founded, google_maps_url, latitude, longitude, enrichment_status, source,
  created_at, updated_at`;
const CONTACT = `id, business_id, name, title, email, email_verified, phone, linkedin_url, is_primary,
  created_at, updated_at`;
const LOG = `id, business_id, service, status, request_data, response_data, error_message, created_at`;
const MESSAGE = `id, business_id, contact_id, message_text, generated_at, sent_at, status`;

type Row = Record<string, unknown>;

@Injectable()
export class BusinessesService {
  constructor(private readonly db: Database) {}

  async stats() {
    const [row] = await this.db.query(`
      SELECT
        (SELECT count(*) FROM business)::int AS "totalBusinesses",
        (SELECT count(*) FROM business WHERE enrichment_status = 'enriched')::int AS "enrichedBusinesses",
        (SELECT count(*) FROM business WHERE enrichment_status = 'pending')::int AS "pendingEnrichment",
        (SELECT count(*) FROM contact)::int AS "totalContacts",
        (SELECT count(*) FROM outreach_message WHERE status = 'sent')::int AS "messagesSent",
        (SELECT count(*) FROM outreach_message WHERE status = 'generated')::int AS "messagesPending"`);
    return row;
  }

  async list(q: ListQuery) {
    const params: unknown[] = [];
    const conditions: string[] = [];
    for (const column of ['city', 'industry', 'enrichment_status'] as const) {
      if (q[column] !== undefined) {
        params.push(q[column]);
        conditions.push(`${column} = $${params.length}`);
      }
    }
    const where = conditions.length ? `WHERE ${conditions.join(' AND ')}` : '';
    const n = params.length;
    const [businesses, [{ total }]] = await Promise.all([
      this.db.query(
        `SELECT ${BUSINESS} FROM business ${where}
         ORDER BY created_at DESC, id DESC LIMIT $${n + 1} OFFSET $${n + 2}`,
        [...params, q.limit, (q.page - 1) * q.limit],
      ),
      this.db.query<{ total: number }>(`SELECT count(*)::int AS total FROM business ${where}`, params),
    ]);

    const contacts = new Map<number, Row[]>(businesses.map((b) => [b.id as number, []]));
    if (businesses.length > 0) {
      const rows = await this.db.query(
        `SELECT ${CONTACT} FROM contact WHERE business_id = ANY($1) ORDER BY id`,
        [[...contacts.keys()]],
      );
      for (const c of rows) contacts.get(c.business_id as number)?.push(c);
    }
    return {
      data: businesses.map((b) => ({ ...b, contacts: contacts.get(b.id as number) })),
      meta: { total, page: q.page, limit: q.limit, totalPages: Math.ceil(total / q.limit) },
    };
  }

  async detail(id: number) {
    const [business] = await this.db.query(`SELECT ${BUSINESS} FROM business WHERE id = $1`, [id]);
    if (!business) throw new NotFoundException(`Business with id ${id} not found`);
    const [contacts, logs, messages] = await Promise.all([
      this.db.query(`SELECT ${CONTACT} FROM contact WHERE business_id = $1 ORDER BY id`, [id]),
      this.db.query(
        `SELECT ${LOG} FROM enrichment_log WHERE business_id = $1
         ORDER BY created_at DESC, id DESC LIMIT 10`,
        [id],
      ),
      this.db.query(
        `SELECT ${MESSAGE} FROM outreach_message WHERE business_id = $1
         ORDER BY generated_at DESC, id DESC LIMIT 5`,
        [id],
      ),
    ]);
    return { ...business, contacts, enrichment_logs: logs, outreach_messages: messages };
  }
}
