"""Durable state: the Lance adapter (the only module that imports ``lance``) and the transactional catalog."""
