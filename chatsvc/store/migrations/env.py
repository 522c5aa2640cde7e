"""Alembic environment: runs on the connection chatsvc.store.migrate hands it (async engines included)."""

from alembic import context

from chatsvc.store.tables import metadata

connection = context.config.attributes.get("connection")


def run() -> None:
    if connection is None:
        url = context.config.get_main_option("sqlalchemy.url")
        context.configure(url=url, target_metadata=metadata, literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run()
