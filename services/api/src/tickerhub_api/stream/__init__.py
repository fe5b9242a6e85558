"""The stream machinery: from the Redis subscription to each client's socket.

Module map, in the order a diff travels: docs/architecture.md.
"""
