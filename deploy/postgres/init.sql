-- Provisions the database `orrery` of the development containers (docker-compose.yml and the Kubernetes dev
-- overlay) as `scripts/infra/postgres.sh provision` does on a local server. The postgres image runs it once, as
-- the superuser, in the database POSTGRES_DB=orrery it has just created. Per service a login role
-- orrery_<schema> owning schema <schema> and nothing else; `public` is closed to them. Each role's password is
-- its name: development only (ORRERY_ENV=prod refuses it); deployments provision their own.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE orrery FROM PUBLIC;

-- auth
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orrery_auth') THEN
    CREATE ROLE orrery_auth LOGIN PASSWORD 'orrery_auth' NOSUPERUSER NOCREATEDB NOCREATEROLE;
  END IF;
END $$;
GRANT CONNECT ON DATABASE orrery TO orrery_auth;
CREATE SCHEMA IF NOT EXISTS auth AUTHORIZATION orrery_auth;
ALTER ROLE orrery_auth SET search_path = auth;

-- characters
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orrery_characters') THEN
    CREATE ROLE orrery_characters LOGIN PASSWORD 'orrery_characters' NOSUPERUSER NOCREATEDB NOCREATEROLE;
  END IF;
END $$;
GRANT CONNECT ON DATABASE orrery TO orrery_characters;
CREATE SCHEMA IF NOT EXISTS characters AUTHORIZATION orrery_characters;
ALTER ROLE orrery_characters SET search_path = characters;

-- chat
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orrery_chat') THEN
    CREATE ROLE orrery_chat LOGIN PASSWORD 'orrery_chat' NOSUPERUSER NOCREATEDB NOCREATEROLE;
  END IF;
END $$;
GRANT CONNECT ON DATABASE orrery TO orrery_chat;
CREATE SCHEMA IF NOT EXISTS chat AUTHORIZATION orrery_chat;
ALTER ROLE orrery_chat SET search_path = chat;

-- dossier
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orrery_dossier') THEN
    CREATE ROLE orrery_dossier LOGIN PASSWORD 'orrery_dossier' NOSUPERUSER NOCREATEDB NOCREATEROLE;
  END IF;
END $$;
GRANT CONNECT ON DATABASE orrery TO orrery_dossier;
CREATE SCHEMA IF NOT EXISTS dossier AUTHORIZATION orrery_dossier;
ALTER ROLE orrery_dossier SET search_path = dossier;
