#!/usr/bin/env bash
# Measures adopting a database the original backend made, while that backend writes:
# seeds N businesses, strips the database down to the original schema (what the original
# backend's Prisma migration made, with its bookkeeping table), then runs `letip migrate`
# on it while pgbench writes as the original backend does (updates that set updated_at,
# inserts), and reports how long the adoption took and what the writers waited.
#
#   bash scripts/adoption.sh [--businesses 1000000] [--debug]
#
# The adoption's time is PostgreSQL's (index builds, counting the rows once); --debug uses
# the debug build, which builds faster and seeds slower.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

businesses=1000000
profile=release
while [ $# -gt 0 ]; do
    case "$1" in
        --businesses) businesses="$2"; shift 2 ;;
        --debug) profile=debug; shift ;;
        *) echo "adoption: unknown argument $1" >&2; exit 2 ;;
    esac
done

bash scripts/services.sh
pg_bin=/usr/lib/postgresql/15/bin
db=letip_adoption_bench
admin=postgres://postgres@127.0.0.1:5432/postgres
url=postgres://postgres@127.0.0.1:5432/$db
work=.dev/adoption
mkdir -p "$work"
rm -f "$work"/writer*

if [ "$profile" = release ]; then
    cargo build --release --locked -p letip-server
else
    cargo build --locked -p letip-server
fi
letip=target/$profile/letip

psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
echo "adoption: seeding $businesses businesses"
DATABASE_URL=$url RUST_LOG=warn "$letip" seed --businesses "$businesses" --seed 42

echo "adoption: stripping the database to the original backend's schema"
# Every migration of this service reverted, newest first (the first one's revert keeps the
# original tables), then its indexes and bookkeeping dropped, and Prisma's added.
for down in $(ls -d migrations/*/ | sort -r); do
    psql -q -v ON_ERROR_STOP=1 "$url" -f "${down}down.sql" > /dev/null
done
psql -q -v ON_ERROR_STOP=1 "$url" <<'SQL'
DROP INDEX letip_business_created_idx, letip_business_city_created_idx,
    letip_business_industry_created_idx, letip_business_status_created_idx,
    letip_outreach_message_contact_id_idx;
DROP TABLE __diesel_schema_migrations;
CREATE TABLE "_prisma_migrations" (
    "id" VARCHAR(36) PRIMARY KEY NOT NULL, "checksum" VARCHAR(64) NOT NULL,
    "finished_at" TIMESTAMPTZ, "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT,
    "rolled_back_at" TIMESTAMPTZ, "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count" INTEGER NOT NULL DEFAULT 0);
INSERT INTO "_prisma_migrations" VALUES ('00000000-0000-0000-0000-000000000001',
    repeat('0', 64), now(), '20251101000000_init', NULL, NULL, now(), 1);
VACUUM ANALYZE;
SQL

# What the original backend sends while it keeps serving: a PATCH (an update that sets
# updated_at itself) and a create, ten times a second per client.
cat > "$work/writer.sql" <<SQL
\set id random(1, $businesses)
UPDATE "public"."business" SET "phone" = '(732) 555-0100', "updated_at" = timezone('UTC', now()) WHERE "id" = :id;
INSERT INTO "public"."business" ("name", "city", "updated_at") VALUES ('Writer during adoption', 'Freehold', timezone('UTC', now()));
\sleep 100 ms
SQL

seconds=$(( 20 + businesses / 20000 ))
"$pg_bin/pgbench" -n -c 4 -j 2 -T "$seconds" -f "$work/writer.sql" -l \
    --log-prefix="$work/writer" "$url" > "$work/pgbench.out" 2>&1 &
pgbench=$!
sleep 5

start_us=$(date +%s%6N)
DATABASE_URL=$url RUST_LOG=info "$letip" migrate 2>&1 | tee "$work/migrate.log"
end_us=$(date +%s%6N)
wait "$pgbench" || { cat "$work/pgbench.out"; exit 1; }

# Each pgbench log line: client, transaction, latency (us), script, epoch s, epoch us.
cat "$work"/writer* | awk -v s="$start_us" -v e="$end_us" '
    { t = $5 * 1000000 + $6; lat = $3 / 1000
      if (t >= s && t <= e + lat * 1000) { d[++nd] = lat } else { o[++no] = lat } }
    function report(name, a, n,    i, j, tmp, max) {
        for (i = 2; i <= n; i++) { tmp = a[i]; j = i - 1
            while (j > 0 && a[j] > tmp) { a[j + 1] = a[j]; j-- } a[j + 1] = tmp }
        if (n == 0) { printf "%s: no transaction\n", name; return }
        printf "%s: %d transactions, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", name, n,
            a[int(n * 0.5) + 1], a[int(n * 0.99) + 1], a[n]
    }
    END {
        printf "adoption took %.1f s\n", (e - s) / 1000000
        report("writers during adoption", d, nd)
        report("writers before and after", o, no)
    }' | tee "$work/report.txt"
grep -E "failed|aborted" "$work/pgbench.out" || true
psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
