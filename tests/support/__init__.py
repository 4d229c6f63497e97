"""What the tests share: free ports, waiting on a condition, the session's Serve app (live.py), fake
model stages and in-process services (services.py), rendered images, tiny models, helper servers
(PostgreSQL, Prometheus, a fake hub, a scripted chat server) and vendored schemas (data/).

Test modules import from here and never from one another."""
