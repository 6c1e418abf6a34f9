-- Django 4.2/5.x (psycopg), as logged by django.db.backends; %s placeholders become $n
-- through server-side binding (psycopg 3), literals shown as Django inlines them.

-- Model.objects.get(pk=1)
SELECT "users"."id", "users"."handle", "users"."display_name", "users"."country", "users"."birth_year", "users"."created_at" FROM "users" WHERE "users"."id" = $1 LIMIT 21

-- .filter(country='NL').order_by('-created_at')[:10]
SELECT "users"."id", "users"."handle", "users"."display_name" FROM "users" WHERE "users"."country" = $1 ORDER BY "users"."created_at" DESC LIMIT 10

-- .count()
SELECT COUNT(*) AS "__count" FROM "posts" WHERE "posts"."user_id" = $1

-- .exists()
SELECT 1 AS "a" FROM "users" WHERE "users"."handle" = $1 LIMIT 1

-- filter with Exists() subquery annotation
SELECT "users"."id", "users"."handle", EXISTS(SELECT 1 AS "a" FROM "posts" U0 WHERE U0."user_id" = ("users"."id") LIMIT 1) AS "has_posts" FROM "users" WHERE "users"."discoverable"

-- select_related (LEFT OUTER JOIN)
SELECT "posts"."id", "posts"."user_id", "posts"."body", "posts"."created_at", "users"."id", "users"."handle", "users"."display_name" FROM "posts" INNER JOIN "users" ON ("posts"."user_id" = "users"."id") WHERE "posts"."id" = $1 LIMIT 21

-- prefetch_related
SELECT "posts"."id", "posts"."user_id", "posts"."body", "posts"."created_at" FROM "posts" WHERE "posts"."user_id" IN ($1, $2, $3)

-- annotate(Count) + values
SELECT "users"."country", COUNT("posts"."id") AS "n" FROM "users" LEFT OUTER JOIN "posts" ON ("users"."id" = "posts"."user_id") GROUP BY "users"."country" ORDER BY "n" DESC

-- aggregate
SELECT MAX("users"."birth_year") AS "birth_year__max", MIN("users"."birth_year") AS "birth_year__min" FROM "users"

-- filter(handle__icontains=...)
SELECT "users"."id", "users"."handle" FROM "users" WHERE UPPER("users"."handle"::text) LIKE UPPER($1)

-- filter(created_at__date=...)
SELECT "users"."id" FROM "users" WHERE ("users"."created_at" AT TIME ZONE 'UTC')::date = $1

-- filter(created_at__year=...)
SELECT "users"."id" FROM "users" WHERE "users"."created_at" BETWEEN $1 AND $2

-- F() expression update
UPDATE "users" SET "birth_year" = ("users"."birth_year" + 1) WHERE "users"."id" = $1

-- save() of an existing row
UPDATE "posts" SET "user_id" = $1, "body" = $2, "created_at" = $3 WHERE "posts"."id" = $4

-- create()
INSERT INTO "posts" ("user_id", "body", "created_at") VALUES ($1, $2, $3) RETURNING "posts"."id"

-- bulk_create
INSERT INTO "follows" ("follower_id", "followee_id", "created_at") VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT DO NOTHING

-- delete()
DELETE FROM "follows" WHERE "follows"."follower_id" = $1

-- Subquery / OuterRef annotation
SELECT "users"."id", (SELECT U0."body" FROM "posts" U0 WHERE U0."user_id" = ("users"."id") ORDER BY U0."created_at" DESC LIMIT 1) AS "latest" FROM "users"

-- values_list(flat=True).distinct()
SELECT DISTINCT "users"."country" FROM "users" ORDER BY "users"."country" ASC

-- Q(a) | Q(b)
SELECT "users"."id" FROM "users" WHERE ("users"."country" = $1 OR "users"."birth_year" > $2)

-- in_bulk
SELECT "users"."id", "users"."handle" FROM "users" WHERE "users"."id" IN ($1, $2)

-- iterator over a paginated queryset
SELECT "posts"."id", "posts"."body" FROM "posts" ORDER BY "posts"."id" ASC LIMIT 25 OFFSET 50

-- Window annotation
SELECT "posts"."id", ROW_NUMBER() OVER (PARTITION BY "posts"."user_id" ORDER BY "posts"."created_at" DESC) AS "rn" FROM "posts"

-- transaction.atomic()
BEGIN

SAVEPOINT "s140237_x1"

RELEASE SAVEPOINT "s140237_x1"

ROLLBACK TO SAVEPOINT "s140237_x1"

COMMIT

-- connection setup
SET TIME ZONE 'UTC'

SELECT set_config('TimeZone', 'UTC', false)

-- migrations: django_migrations check (relation may not exist: introspection)
SELECT c.relname, CASE WHEN c.relispartition THEN 'p' WHEN c.relkind IN ('m', 'v') THEN 'v' ELSE 't' END FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('f', 'm', 'p', 'r', 'v') AND n.nspname NOT IN ('pg_catalog', 'pg_toast') AND pg_catalog.pg_table_is_visible(c.oid)
