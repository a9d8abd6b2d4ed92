"""Integrations with frameworks, each imported only by an application that uses it.

Nothing in pgqueue imports these modules, so pgqueue runs without the frameworks installed.
"""
