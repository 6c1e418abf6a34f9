-- ORM-shaped pgbench script over examples/schema.sql (used by benches/pgbench.sh).
-- One transaction = a feed page, a batch lookup and an aggregate, the way an ORM issues them:
-- joins, an IN list, ORDER BY/LIMIT, GROUP BY, with literals that vary on every run (in simple
-- mode each statement text is new, so a proxy cannot get away with a per-text cache).
-- Only untagged columns of users, posts and follows are used, so the example policy allows all.
\set uid random(1, 1000)
\set a random(1, 1000)
\set b random(1, 1000)
\set c random(1, 950)
SELECT p.id, p.body, p.created_at, u.handle, u.display_name FROM follows f JOIN posts p ON p.user_id = f.followee_id JOIN users u ON u.id = p.user_id WHERE f.follower_id = :uid ORDER BY p.created_at DESC, p.id DESC LIMIT 20;
SELECT u.id, u.handle, u.display_name, u.country FROM users u WHERE u.id IN (:uid, :a, :b, :c) ORDER BY u.id;
SELECT u.country, count(*) AS posts FROM posts p JOIN users u ON u.id = p.user_id WHERE p.user_id BETWEEN :c AND :c + 50 GROUP BY u.country ORDER BY posts DESC, u.country LIMIT 5;
