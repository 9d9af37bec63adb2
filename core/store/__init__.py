"""History store over SQLModel tables, with Alembic migrations."""
