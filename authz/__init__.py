"""The domain: no Flask here (docs/architecture.md has the whole layout).

- engine/     the decision engine (policy files, index, Decider, checks, AuthZEN)
- workflows/  what managers and users do, each owning its transaction
- review/     the security team's tools (report, exports, policy tests, fixtures)
- roles.py    the role rule, once: ranks, "in force", today (UTC)
- passwords.py, logins.py  the password policy; login emails' normal form
              and look-alike key (their data files are in data/)
- the rest    infrastructure: config, db, errors, runtime, security, mail,
              pagination, textkeys, and the demo data (demo.py)
"""
