SELECT 'a'
'b' AS x, id FROM users