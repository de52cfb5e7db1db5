"""Operations: the embedded database, the lifecycle around it, migrations, purge and demo data."""
