"""Herald's database backend: django-tenants' PostgreSQL backend, minus repeated SET search_path."""
