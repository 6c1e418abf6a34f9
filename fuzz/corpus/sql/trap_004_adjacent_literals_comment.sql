SELECT 'a' -- c
'b' AS x, id FROM users