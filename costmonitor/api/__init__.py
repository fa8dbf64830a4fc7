"""The REST API plumbing shared by every app: envelope, errors, auth, permissions, throttles."""
