-- Rails 7 ActiveRecord (pg adapter), prepared statements on: binds are $n.

-- User.find(1)
SELECT "users".* FROM "users" WHERE "users"."id" = $1 LIMIT $2

-- User.find_by(handle: ...)
SELECT "users"."id", "users"."handle", "users"."display_name" FROM "users" WHERE "users"."handle" = $1 LIMIT $2

-- User.where(country: "NL").order(created_at: :desc).limit(10)
SELECT "users"."id", "users"."handle" FROM "users" WHERE "users"."country" = $1 ORDER BY "users"."created_at" DESC LIMIT $2

-- Post.count
SELECT COUNT(*) FROM "posts"

-- Post.where(user_id: 1).exists?
SELECT 1 AS one FROM "posts" WHERE "posts"."user_id" = $1 LIMIT $2

-- includes(:user) (second query)
SELECT "users"."id", "users"."handle", "users"."display_name" FROM "users" WHERE "users"."id" IN ($1, $2, $3)

-- joins(:posts).distinct
SELECT DISTINCT "users"."id", "users"."handle" FROM "users" INNER JOIN "posts" ON "posts"."user_id" = "users"."id"

-- group(:country).count
SELECT COUNT(*) AS "count_all", "users"."country" AS "users_country" FROM "users" GROUP BY "users"."country"

-- pluck(:id)
SELECT "posts"."id" FROM "posts" WHERE "posts"."user_id" = $1

-- find_each batches
SELECT "posts"."id", "posts"."body" FROM "posts" WHERE "posts"."id" > $1 ORDER BY "posts"."id" ASC LIMIT $2

-- create
INSERT INTO "posts" ("user_id", "body", "created_at") VALUES ($1, $2, $3) RETURNING "id"

-- update
UPDATE "posts" SET "body" = $1 WHERE "posts"."id" = $2

-- destroy
DELETE FROM "posts" WHERE "posts"."id" = $1

-- upsert_all
INSERT INTO "follows" ("follower_id","followee_id","created_at") VALUES (1, 2, CURRENT_TIMESTAMP) ON CONFLICT ("follower_id","followee_id") DO UPDATE SET "created_at"=excluded."created_at" RETURNING "follower_id"

-- increment_counter style
UPDATE "users" SET "birth_year" = COALESCE("birth_year", 0) + $1 WHERE "users"."id" = $2

-- where.not / IS NULL
SELECT "users"."id" FROM "users" WHERE "users"."display_name" IS NOT NULL AND "users"."country" != $1

-- where(id: subquery)
SELECT "users"."id", "users"."handle" FROM "users" WHERE "users"."id" IN (SELECT "posts"."user_id" FROM "posts" WHERE "posts"."created_at" > $1)

-- left_outer_joins + where nil
SELECT "users"."id" FROM "users" LEFT OUTER JOIN "posts" ON "posts"."user_id" = "users"."id" WHERE "posts"."id" IS NULL

-- sum / average
SELECT AVG("users"."birth_year") FROM "users" WHERE "users"."country" = $1

-- lock
SELECT "posts"."id", "posts"."body" FROM "posts" WHERE "posts"."id" = $1 LIMIT $2 FOR UPDATE

-- transactions
BEGIN

SAVEPOINT active_record_1

RELEASE SAVEPOINT active_record_1

ROLLBACK TO SAVEPOINT active_record_1

COMMIT

-- connection configuration
SET client_min_messages TO 'warning'

SET intervalstyle = iso_8601

SHOW search_path

-- schema cache: primary keys
SELECT a.attname FROM (SELECT indrelid, indkey, generate_subscripts(indkey, 1) idx FROM pg_index WHERE indrelid = '"users"'::regclass AND indisprimary) i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[i.idx] ORDER BY i.idx

-- schema cache: columns
SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.atttypid, a.atttypmod FROM pg_attribute a LEFT JOIN pg_attrdef d ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE a.attrelid = '"posts"'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum

-- type map load
SELECT t.oid, t.typname FROM pg_type as t WHERE t.typname IN ('int2', 'int4', 'int8', 'oid', 'float4', 'float8', 'bool')
