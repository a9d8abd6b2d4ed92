"""`manage.py pgqueue_work` and `manage.py pgqueue_migrate`."""
