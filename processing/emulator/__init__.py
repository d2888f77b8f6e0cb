"""Local stand-ins for cloud services, for tests, demos and offline notebooks."""
