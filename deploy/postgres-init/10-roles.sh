#!/bin/sh
# First start of the compose PostgreSQL: the owner role (runs the migrations, owns the tables) and the
# service's login role (owns nothing, no superuser, subject to row-level security), as service/ops/embedded.py
# sets them up. Passwords come from the compose secrets, never from this file.
set -eu
owner_pw=$(cat /run/secrets/db_owner_password)
app_pw=$(cat /run/secrets/db_app_password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v owner_pw="$owner_pw" -v app_pw="$app_pw" <<'SQL'
CREATE ROLE strengths_owner LOGIN CREATEROLE PASSWORD :'owner_pw';
CREATE ROLE strengths_app LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD :'app_pw';
GRANT strengths_app TO strengths_owner WITH ADMIN OPTION;
CREATE DATABASE strengths OWNER strengths_owner;
SQL
