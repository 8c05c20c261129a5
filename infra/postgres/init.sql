-- cdcview's PostgreSQL side: a role and a database it owns. cdcview creates
-- its tables itself (order_details_mv, cdcview_offsets, cdcview_dead_letters).
SELECT 'CREATE ROLE cdcview LOGIN PASSWORD ''cdcview'''
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdcview')\gexec
SELECT 'CREATE DATABASE cdcview OWNER cdcview'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'cdcview')\gexec
