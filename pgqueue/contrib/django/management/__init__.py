"""Management commands: pgqueue_work and pgqueue_migrate."""
