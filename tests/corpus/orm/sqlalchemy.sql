-- SQLAlchemy 2.0 (psycopg 3): labels like users_id, anon_1 subqueries; binds as $n.

-- session.get(User, 1)
SELECT users.id AS users_id, users.handle AS users_handle, users.display_name AS users_display_name, users.country AS users_country FROM users WHERE users.id = $1

-- select(User).where(...).order_by(...).limit(...)
SELECT users.id, users.handle, users.display_name FROM users WHERE users.country = $1 ORDER BY users.created_at DESC LIMIT $2

-- query.count() (legacy)
SELECT count(*) AS count_1 FROM (SELECT posts.id AS posts_id, posts.user_id AS posts_user_id, posts.body AS posts_body FROM posts WHERE posts.user_id = $1) AS anon_1

-- func.count in select
SELECT count(posts.id) AS count_1 FROM posts WHERE posts.user_id = $1

-- exists()
SELECT EXISTS (SELECT * FROM posts WHERE posts.user_id = $1) AS anon_1

-- joinedload
SELECT posts.id, posts.user_id, posts.body, users_1.id AS id_1, users_1.handle FROM posts LEFT OUTER JOIN users AS users_1 ON users_1.id = posts.user_id WHERE posts.id = $1

-- selectinload
SELECT posts.user_id AS posts_user_id, posts.id AS posts_id, posts.body AS posts_body FROM posts WHERE posts.user_id IN ($1, $2, $3)

-- subqueryload
SELECT posts.id AS posts_id, anon_1.users_id AS anon_1_users_id FROM (SELECT users.id AS users_id FROM users WHERE users.country = $1) AS anon_1 JOIN posts ON anon_1.users_id = posts.user_id ORDER BY anon_1.users_id

-- group_by with label
SELECT users.country, count(users.id) AS n FROM users GROUP BY users.country HAVING count(users.id) > $1

-- outerjoin + is_(None)
SELECT users.id FROM users LEFT OUTER JOIN follows ON users.id = follows.follower_id WHERE follows.follower_id IS NULL

-- in_ with expanding bind
SELECT users.id, users.handle FROM users WHERE users.id IN ($1, $2, $3)

-- tuple_ in
SELECT follows.follower_id, follows.followee_id FROM follows WHERE (follows.follower_id, follows.followee_id) IN (($1, $2))

-- case()
SELECT users.id, CASE WHEN (users.birth_year < $1) THEN $2 ELSE $3 END AS anon_1 FROM users

-- cast()
SELECT CAST(users.birth_year AS VARCHAR) AS anon_1 FROM users

-- insert returning (unit of work)
INSERT INTO posts (user_id, body, created_at) VALUES ($1, $2, $3) RETURNING posts.id

-- insertmanyvalues
INSERT INTO follows (follower_id, followee_id, created_at) VALUES ($1, $2, $3), ($4, $5, $6)

-- update
UPDATE posts SET body=$1 WHERE posts.id = $2

-- delete
DELETE FROM posts WHERE posts.id = $1

-- postgresql insert().on_conflict_do_update
INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2) ON CONFLICT (follower_id, followee_id) DO UPDATE SET created_at = now()

-- window over
SELECT posts.id, rank() OVER (PARTITION BY posts.user_id ORDER BY posts.created_at) AS anon_1 FROM posts

-- CTE
WITH recent AS (SELECT posts.user_id AS user_id, max(posts.created_at) AS last FROM posts GROUP BY posts.user_id) SELECT users.handle, recent.last FROM users JOIN recent ON users.id = recent.user_id

-- union
SELECT users.id FROM users WHERE users.country = $1 UNION SELECT posts.user_id FROM posts

-- with_for_update
SELECT posts.id FROM posts WHERE posts.id = $1 FOR UPDATE

-- views
SELECT user_profiles.id, user_profiles.handle FROM user_profiles WHERE user_profiles.country = $1

-- engine connect
select pg_catalog.version()

select current_schema()

show standard_conforming_strings

BEGIN

COMMIT

SAVEPOINT sa_savepoint_1

RELEASE SAVEPOINT sa_savepoint_1

ROLLBACK TO SAVEPOINT sa_savepoint_1

-- has_table
select relname from pg_class c join pg_namespace n on n.oid=c.relnamespace where n.nspname=current_schema() and relname=$1
