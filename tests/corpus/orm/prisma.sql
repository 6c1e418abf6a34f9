-- Prisma 5 (query engine, PostgreSQL): schema-qualified quoted names, $n binds, OFFSET $n.

-- findUnique
SELECT "public"."users"."id", "public"."users"."handle", "public"."users"."display_name" FROM "public"."users" WHERE ("public"."users"."id" = $1 AND 1=1) LIMIT $2 OFFSET $3

-- findMany with where/orderBy/take/skip
SELECT "public"."posts"."id", "public"."posts"."user_id", "public"."posts"."body", "public"."posts"."created_at" FROM "public"."posts" WHERE "public"."posts"."user_id" = $1 ORDER BY "public"."posts"."created_at" DESC LIMIT $2 OFFSET $3

-- include relation (second query)
SELECT "public"."users"."id", "public"."users"."handle" FROM "public"."users" WHERE "public"."users"."id" IN ($1,$2) OFFSET $3

-- count
SELECT COUNT(*) FROM (SELECT "public"."posts"."id" FROM "public"."posts" WHERE "public"."posts"."user_id" = $1 OFFSET $2) AS "sub"

-- _count aggregate
SELECT COUNT("id") AS "_count$id" FROM (SELECT "public"."users"."id" FROM "public"."users" WHERE 1=1 OFFSET $1) AS "sub"

-- aggregate avg/max
SELECT AVG("birth_year") AS "_avg$birth_year", MAX("birth_year") AS "_max$birth_year" FROM (SELECT "public"."users"."birth_year" FROM "public"."users" WHERE 1=1 OFFSET $1) AS "sub"

-- groupBy
SELECT "public"."users"."country", COUNT("public"."users"."id") AS "_count$id" FROM "public"."users" WHERE 1=1 GROUP BY "public"."users"."country" OFFSET $1

-- create
INSERT INTO "public"."posts" ("user_id","body","created_at") VALUES ($1,$2,$3) RETURNING "public"."posts"."id", "public"."posts"."user_id", "public"."posts"."body", "public"."posts"."created_at"

-- update
UPDATE "public"."posts" SET "body" = $1 WHERE ("public"."posts"."id" = $2 AND 1=1) RETURNING "public"."posts"."id"

-- delete
DELETE FROM "public"."posts" WHERE ("public"."posts"."id" = $1 AND 1=1)

-- deleteMany
DELETE FROM "public"."follows" WHERE "public"."follows"."follower_id" = $1

-- upsert (native)
INSERT INTO "public"."follows" ("follower_id","followee_id","created_at") VALUES ($1,$2,$3) ON CONFLICT ("follower_id","followee_id") DO UPDATE SET "created_at" = $4 WHERE ("public"."follows"."follower_id" = $5 AND "public"."follows"."followee_id" = $6 AND 1=1) RETURNING "public"."follows"."follower_id", "public"."follows"."followee_id"

-- relation filter some
SELECT "public"."users"."id" FROM "public"."users" WHERE ("public"."users"."id") IN (SELECT "t1"."user_id" FROM "public"."posts" AS "t1" WHERE ("t1"."body" LIKE $1 AND "t1"."user_id" IS NOT NULL)) OFFSET $2

-- relation filter none
SELECT "public"."users"."id" FROM "public"."users" WHERE ("public"."users"."id") NOT IN (SELECT "t1"."follower_id" FROM "public"."follows" AS "t1" WHERE "t1"."follower_id" IS NOT NULL) OFFSET $1

-- cursor pagination
SELECT "public"."posts"."id", "public"."posts"."body" FROM "public"."posts", (SELECT "public"."posts"."id" AS "posts_id_0" FROM "public"."posts" WHERE ("public"."posts"."id") = ($1)) AS "order_cmp" WHERE "public"."posts"."id" >= "order_cmp"."posts_id_0" ORDER BY "public"."posts"."id" ASC LIMIT $2 OFFSET $3

-- contains, case-insensitive
SELECT "public"."users"."id", "public"."users"."handle" FROM "public"."users" WHERE "public"."users"."handle"::text ILIKE $1 OFFSET $2

-- distinct
SELECT DISTINCT ON ("public"."posts"."user_id") "public"."posts"."id", "public"."posts"."user_id" FROM "public"."posts" WHERE 1=1 ORDER BY "public"."posts"."user_id" ASC OFFSET $1

-- interactive transaction
BEGIN

COMMIT

ROLLBACK

-- engine connect
SELECT version()

SELECT current_schema()

-- introspection (prisma db pull) essentials
SELECT tbl.relname AS table_name FROM pg_class AS tbl INNER JOIN pg_namespace AS namespace ON namespace.oid = tbl.relnamespace WHERE namespace.nspname = 'public' AND tbl.relkind IN ('r', 'p') ORDER BY table_name

SELECT oid, typname FROM pg_type WHERE typname = ANY($1)
