-- Hibernate 6 (PostgreSQLDialect), JDBC binds are $n on the wire; aliases like u1_0.

-- session.find(User.class, 1)
select u1_0.id,u1_0.country,u1_0.created_at,u1_0.display_name,u1_0.handle from users u1_0 where u1_0.id=$1

-- HQL: from Post p where p.userId = :u order by p.createdAt desc
select p1_0.id,p1_0.body,p1_0.created_at,p1_0.user_id from posts p1_0 where p1_0.user_id=$1 order by p1_0.created_at desc

-- paging
select p1_0.id,p1_0.body from posts p1_0 order by p1_0.id offset $1 rows fetch first $2 rows only

-- count query
select count(p1_0.id) from posts p1_0 where p1_0.user_id=$1

-- join fetch
select p1_0.id,p1_0.body,u1_0.id,u1_0.handle from posts p1_0 join users u1_0 on u1_0.id=p1_0.user_id where p1_0.id=$1

-- left join with condition
select u1_0.id,count(p1_0.id) from users u1_0 left join posts p1_0 on u1_0.id=p1_0.user_id group by u1_0.id having count(p1_0.id)>$1

-- exists subquery
select u1_0.id from users u1_0 where exists(select 1 from follows f1_0 where f1_0.follower_id=u1_0.id)

-- in subquery
select u1_0.handle from users u1_0 where u1_0.id in(select f1_0.followee_id from follows f1_0 where f1_0.follower_id=$1)

-- persist
insert into posts (body,created_at,user_id) values ($1,$2,$3) returning id

-- merge / update
update posts set body=$1,created_at=$2,user_id=$3 where id=$4

-- remove
delete from posts where id=$1

-- bulk HQL update
update users set display_name=$1 where country=$2

-- sequence style (identity)
select nextval('posts_id_seq')

-- criteria: like with lower
select u1_0.id,u1_0.handle from users u1_0 where lower(u1_0.handle) like lower($1) escape ''

-- case when projection
select u1_0.id,case when u1_0.birth_year<$1 then 'old' else 'young' end from users u1_0

-- coalesce / cast
select u1_0.id,coalesce(u1_0.display_name,u1_0.handle),cast(u1_0.birth_year as varchar) from users u1_0

-- pessimistic lock
select p1_0.id,p1_0.body from posts p1_0 where p1_0.id=$1 for no key update

-- tuple in
select f1_0.follower_id,f1_0.followee_id from follows f1_0 where (f1_0.follower_id,f1_0.followee_id) in (($1,$2),($3,$4))

-- native query with positional params
select a1_0.id,a1_0.name from advertisers a1_0 where a1_0.name=$1

-- ad impression insert
insert into ad_impressions (advertiser_id,clicked,shown_at,user_id) values ($1,$2,$3,$4) returning id

-- distinct on via native query
select distinct p1_0.user_id from posts p1_0

-- JDBC connection start
SET extra_float_digits = 3

SET application_name = 'PostgreSQL JDBC Driver'

BEGIN

COMMIT

ROLLBACK

-- schema validation (hbm2ddl validate) looks at information_schema
select table_name, column_name, data_type from information_schema.columns where table_schema = 'public' and table_name = 'posts'
